// Display: VOI transform (PS3.3 C.11.2.1.2 window functions or a VOI LUT), inversion, grey out.
// The CPU twin is src/render/voi.rs (`voi_normalized`, `grey`): keep the two the same math.

struct Params {
    // center, width, LUT first mapped value, LUT maximum entry value
    window: vec4<f32>,
    // function (0 linear, 1 linear exact, 2 sigmoid, 3 LUT), invert, LUT length, unused
    mode: vec4<u32>,
}

// Uniform, read in no branch condition of its own (see resample.wgsl).
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var resampled: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> lut: array<u32>;

// The target stores sRGB-encoded values (an *Srgb swapchain format; 8-bit only): write the
// linear value whose encoding is the grey level, so the stored byte is a plain target's.
override SRGB_TARGET: bool = false;
// `params.mode.x` and `params.mode.y != 0` as pipeline constants (the CPU twin reads the
// buffer): a software rasterizer runs every case of a switch on a buffer value.
override voi_function: u32 = 0u;
override inverted: bool = false;

struct Fullscreen {
    @builtin(position) position: vec4<f32>,
    // 0..1 across the viewport, top left to bottom right: the view may be drawn into a part of
    // a larger target (a window), where @builtin(position) is not the view's own pixel.
    @location(0) uv: vec2<f32>,
}

@vertex
fn vs_fullscreen(@builtin(vertex_index) i: u32) -> Fullscreen {
    let x = f32(i32(i & 1u) * 4 - 1);
    let y = f32(i32(i >> 1u) * 4 - 1);
    var out: Fullscreen;
    out.position = vec4<f32>(x, y, 0.0, 1.0);
    out.uv = vec2<f32>((x + 1.0) * 0.5, (1.0 - y) * 0.5);
    return out;
}

fn linear_from_srgb(v: f32) -> f32 {
    if v <= 0.04045 {
        return v / 12.92;
    }
    return pow((v + 0.055) / 1.055, 2.4);
}

fn voi(x: f32) -> f32 {
    let c = params.window.x;
    let w = params.window.y;
    switch voi_function {
        case 0u: {
            // PS3.3 C.11.2.1.2.1 (LINEAR).
            // A width of 1 or less is a threshold; chosen by select, not by a branch on the
            // uniform alone.
            let threshold = select(0.0, 1.0, x > c - 0.5);
            var ramp = (x - (c - 0.5)) / select(w - 1.0, 1.0, w <= 1.0) + 0.5;
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                ramp = 0.0;
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                ramp = 1.0;
            }
            return select(ramp, threshold, w <= 1.0);
        }
        case 1u: {
            // LINEAR_EXACT, C.11.2.1.3.2.
            if x <= c - w / 2.0 {
                return 0.0;
            }
            if x > c + w / 2.0 {
                return 1.0;
            }
            return (x - c) / w + 0.5;
        }
        case 2u: {
            // SIGMOID, C.11.2.1.3.1.
            return 1.0 / (1.0 + exp(-4.0 * (x - c) / w));
        }
        default: {
            let n = i32(max(params.mode.z, 1u));
            let idx = i32(clamp(floor(x + 0.5) - params.window.z, 0.0, f32(n - 1)));
            return f32(lut[idx]) / params.window.w;
        }
    }
}

// The resampled pixel under `uv`: the viewport is exactly the resampled image's size, so
// uv * size is the pixel centre.
fn resampled_at(uv: vec2<f32>) -> vec4<f32> {
    let size = vec2<i32>(textureDimensions(resampled));
    let texel = clamp(vec2<i32>(floor(uv * vec2<f32>(size))), vec2<i32>(0), size - 1);
    return textureLoad(resampled, texel, 0);
}

@fragment
fn fs_display(in: Fullscreen) -> @location(0) vec4<f32> {
    let r = resampled_at(in.uv);
    if r.y <= 0.0 {
        return vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }
    var y = clamp(voi(r.x), 0.0, 1.0);
    if inverted {
        y = 1.0 - y;
    }
    if SRGB_TARGET {
        // The grey level a plain 8-bit target would store, then the linear value at its very
        // centre: the target's encoding (an approximation on some drivers) lands on it.
        y = linear_from_srgb(round(y * 255.0) / 255.0);
    }
    return vec4<f32>(y, y, y, 1.0);
}

// Colour: the resampled (red, green, blue, coverage) shown as it is (8 bits a channel, no
// VOI: colour images carry none, PS3.3 C.11.2), inverted when asked. CPU twin: voi.rs
// `rgb_level` (whose rounding is ties-to-even, as round() here).
@fragment
fn fs_display_rgb(in: Fullscreen) -> @location(0) vec4<f32> {
    let r = resampled_at(in.uv);
    if r.w <= 0.0 {
        return vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }
    var c = clamp(round(r.rgb) / 255.0, vec3<f32>(0.0), vec3<f32>(1.0));
    if inverted {
        c = 1.0 - c;
    }
    if SRGB_TARGET {
        c = vec3<f32>(linear_from_srgb(c.r), linear_from_srgb(c.g), linear_from_srgb(c.b));
    }
    return vec4<f32>(c, 1.0);
}
