// Display: VOI transform (PS3.3 C.11.2.1.2 window functions or a VOI LUT), inversion, grey out.
// The CPU twin is src/render/voi.rs (`voi_normalized`, `grey`): keep the two the same math.

struct Params {
    // center, width, LUT first mapped value, LUT maximum entry value
    window: vec4<f32>,
    // function (0 linear, 1 linear exact, 2 sigmoid, 3 LUT), invert, LUT length, unused
    mode: vec4<u32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var resampled: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> lut: array<u32>;

@vertex
fn vs_fullscreen(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let x = f32(i32(i & 1u) * 4 - 1);
    let y = f32(i32(i >> 1u) * 4 - 1);
    return vec4<f32>(x, y, 0.0, 1.0);
}

fn voi(x: f32) -> f32 {
    let c = params.window.x;
    let w = params.window.y;
    switch params.mode.x {
        case 0u: {
            // PS3.3 C.11.2.1.2.1 (LINEAR).
            if w <= 1.0 {
                return select(0.0, 1.0, x > c - 0.5);
            }
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                return 0.0;
            }
            if x > c - 0.5 + (w - 1.0) / 2.0 {
                return 1.0;
            }
            return (x - (c - 0.5)) / (w - 1.0) + 0.5;
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

@fragment
fn fs_display(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let r = textureLoad(resampled, vec2<i32>(pos.xy), 0);
    if r.y <= 0.0 {
        return vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }
    var y = clamp(voi(r.x), 0.0, 1.0);
    if params.mode.y != 0u {
        y = 1.0 - y;
    }
    return vec4<f32>(y, y, y, 1.0);
}
