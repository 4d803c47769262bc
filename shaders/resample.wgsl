// Resample: each output pixel is a point (or a slab of points) on a plane in patient space,
// mapped to voxels, sampled in modality units and combined over the slab.
// The CPU twin is src/render/kernel.rs (`resample_pixel`): keep the two the same math.

struct Params {
    base: vec4<f32>,
    step_x: vec4<f32>,
    step_y: vec4<f32>,
    step_s: vec4<f32>,
    // columns, rows, slices, flags (1 signed, 2 slice table, 4 trilinear)
    dims: vec4<u32>,
    // fold depth, fold tiles across, slab samples, slab mode (0 average, 1 MIP, 2 MinIP)
    fold: vec4<u32>,
    // 1 / column spacing, 1 / row spacing, half a slice step (mm), slab thickness (mm)
    scale: vec4<f32>,
    // slices per brick, number of bricks
    brick: vec4<u32>,
    // With `on_one_slice`: the texel of voxel (0, 0, k) of that slice k in its brick, which is
    // bound as brick 0 (found by the CPU, `Renderer::resample`).
    one_slice: vec4<i32>,
    // With `on_one_slice`: that slice's rescale slope, intercept and failed flag, the same
    // at every pixel (read here once, not from `slices` at each).
    one_rescale: vec4<f32>,
}

struct Slice {
    // z (mm along the normal), ox, oy (mm in plane), gap after (1.0)
    pos: vec4<f32>,
    // rescale slope, intercept, failed (1.0: the slice's file did not decode; no sample
    // reads it)
    rescale: vec4<f32>,
}

// No branch or loop condition may read only uniforms: lavapipe (Mesa 22.3) "inlines" such
// uniforms, compiling a shader variant for their values at every draw and never freeing it
// (0.5 MB and a compile per frame; benches/README.md). Choices that are the same for every
// pixel are pipeline constants instead (below); the slab loop's count is the one exception
// (a variant per slab thickness chosen, a handful in a reading).
@group(0) @binding(0) var<uniform> params: Params;
// Up to eight bricks of `brick.x` slices each (unused bindings repeat brick 0).
@group(1) @binding(0) var brick0: texture_3d<u32>;
@group(1) @binding(1) var brick1: texture_3d<u32>;
@group(1) @binding(2) var brick2: texture_3d<u32>;
@group(1) @binding(3) var brick3: texture_3d<u32>;
@group(1) @binding(4) var brick4: texture_3d<u32>;
@group(1) @binding(5) var brick5: texture_3d<u32>;
@group(1) @binding(6) var brick6: texture_3d<u32>;
@group(1) @binding(7) var brick7: texture_3d<u32>;
@group(1) @binding(8) var<storage, read> slices: array<Slice>;

// Slices a sample may lie from a slice and be on it (kernel.rs `ON_SLICE`).
const ON_SLICE: f32 = 1e-3;
const BIG: f32 = 3.0e38;

// Pipeline constants, one pipeline per combination: branches on them are resolved when the
// pipeline is built (software rasterizers run both sides of a branch under a lane mask, so a
// uniform flag still costs both paths). They repeat the flag bits of `params.dims.w`, which
// the CPU twin reads.
// Bricks bound (1 to 8): a read chooses among these only (a software rasterizer runs every
// case of a choice under a lane mask, so eight cases cost eight reads).
override brick_count: u32 = 1u;
override use_table: bool = false;
override trilinear: bool = true;
override signed_data: bool = false;
// The plane lies on one slice (the stack's own orientation at a slice position, no slab): the
// slice coordinate is that slice's index at every pixel, and trilinear reads that slice alone
// (the other's weight is 0). Chosen by the CPU (`ResampleVariant::of`); it halves the reads of
// the commonest frame, scrolling a stack in its own plane. The slice's brick is bound alone
// and its place is `params.one_slice`: no brick choice and no division per read, in a folded
// or bricked volume too.
override on_one_slice: bool = false;
// One sample per pixel (no slab), and the slab's combination (0 average, 1 MIP, 2 MinIP): as
// constants, not read from `params` (which still carries them for the CPU twin).
override thin: bool = true;
override slab_mode: u32 = 0u;
// The volume is one unfolded brick: slice k is texture depth k (no integer division per read,
// which a software rasterizer does lane by lane).
override single_block: bool = false;
// A brick's slices are folded into tiles (more than the 3D texture limit in one brick).
override folded: bool = true;

@vertex
fn vs_fullscreen(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    // One triangle that covers the viewport.
    let x = f32(i32(i & 1u) * 4 - 1);
    let y = f32(i32(i >> 1u) * 4 - 1);
    return vec4<f32>(x, y, 0.0, 1.0);
}

// The texel of brick `b`. The conditions on `brick_count` are constants, so a volume of n
// bricks compiles to n reads at most (the last bound brick takes the rest); a plane on one
// slice has its brick bound alone.
fn load_texel(b: i32, texel: vec3<i32>) -> vec4<u32> {
    if brick_count <= 1u || on_one_slice || b == 0 {
        return textureLoad(brick0, texel, 0);
    }
    if brick_count == 2u || b == 1 {
        return textureLoad(brick1, texel, 0);
    }
    if brick_count == 3u || b == 2 {
        return textureLoad(brick2, texel, 0);
    }
    if brick_count == 4u || b == 3 {
        return textureLoad(brick3, texel, 0);
    }
    if brick_count == 5u || b == 4 {
        return textureLoad(brick4, texel, 0);
    }
    if brick_count == 6u || b == 5 {
        return textureLoad(brick5, texel, 0);
    }
    if brick_count == 7u || b == 6 {
        return textureLoad(brick6, texel, 0);
    }
    return textureLoad(brick7, texel, 0);
}

// Stored value at a texel, as f32 (sign-extended for signed data).
fn stored(b: i32, texel: vec3<i32>) -> f32 {
    let raw = load_texel(b, texel).r;
    if signed_data {
        return f32(bitcast<i32>(raw << 16u) >> 16u);
    }
    return f32(raw);
}

// Where slice k starts: brick in w, texel of voxel (0, 0, k) in xyz.
fn slice_origin(k: i32) -> vec4<i32> {
    if on_one_slice {
        return vec4<i32>(params.one_slice.xyz, 0);
    }
    if single_block {
        return vec4<i32>(0, 0, k, 0);
    }
    // The brick: how many bricks start at or before k. A comparison per brick boundary, the
    // loop unrolled (its count is a constant), instead of a division, which a software
    // rasterizer does lane by lane.
    let per_brick = i32(params.brick.x);
    var b = 0;
    for (var n = 1u; n < brick_count; n++) {
        b += select(0, 1, k >= i32(n) * per_brick);
    }
    let local = k - b * per_brick;
    if !folded {
        return vec4<i32>(0, 0, local, b);
    }
    let depth = i32(params.fold.x);
    let tiles_x = i32(params.fold.y);
    let tile = local / depth;
    let z = local - tile * depth;
    let tx = tile % tiles_x;
    let ty = tile / tiles_x;
    return vec4<i32>(tx * i32(params.dims.x), ty * i32(params.dims.y), z, b);
}

// Bilinear in stored units within slice k, then the slice's rescale (the rescale is affine,
// so this equals interpolating modality values).
fn plane_value(k: i32, x0: i32, x1: i32, y0: i32, y1: i32, fi: f32, fj: f32) -> f32 {
    let o = slice_origin(k);
    let s00 = stored(o.w, vec3<i32>(o.x + x0, o.y + y0, o.z));
    let s10 = stored(o.w, vec3<i32>(o.x + x1, o.y + y0, o.z));
    let s01 = stored(o.w, vec3<i32>(o.x + x0, o.y + y1, o.z));
    let s11 = stored(o.w, vec3<i32>(o.x + x1, o.y + y1, o.z));
    let top = s00 * (1.0 - fi) + s10 * fi;
    let bottom = s01 * (1.0 - fi) + s11 * fi;
    let r = slices[k].rescale;
    return (top * (1.0 - fj) + bottom * fj) * r.x + r.y;
}

// Stored value at voxel (i, j, k) in modality units, by the slice's own rescale.
fn value(i: i32, j: i32, k: i32) -> f32 {
    let o = slice_origin(k);
    let r = slices[k].rescale;
    return stored(o.w, vec3<i32>(o.x + i, o.y + j, o.z)) * r.x + r.y;
}

// Voxel coordinates of a sample point; w = 0 outside the volume or inside a gap.
fn to_voxel(c: vec3<f32>) -> vec4<f32> {
    let w = f32(params.dims.x);
    let h = f32(params.dims.y);
    let kk = params.dims.z;
    var i: f32;
    var j: f32;
    var k: f32;
    if use_table {
        let z = c.z;
        var lo = 0u;
        var hi = kk - 2u;
        while lo < hi {
            let mid = (lo + hi + 1u) / 2u;
            if slices[mid].pos.x <= z {
                lo = mid;
            } else {
                hi = mid - 1u;
            }
        }
        // Beyond the ends: at most half a slice step.
        if z < slices[0].pos.x - params.scale.z || z > slices[kk - 1u].pos.x + params.scale.z {
            return vec4<f32>(0.0);
        }
        let a = slices[lo].pos;
        let b = slices[lo + 1u].pos;
        let dz = b.x - a.x;
        var f = 0.0;
        if dz > 0.0 {
            f = clamp((z - a.x) / dz, 0.0, 1.0);
        }
        if a.w > 0.5 && f > 0.0 && f < 1.0 {
            if z - a.x <= params.scale.z {
                f = 0.0;
            } else if b.x - z <= params.scale.z {
                f = 1.0;
            } else {
                return vec4<f32>(0.0);
            }
        }
        k = f32(lo) + f;
        let ox = a.y * (1.0 - f) + b.y * f;
        let oy = a.z * (1.0 - f) + b.z * f;
        i = (c.x - ox) * params.scale.x;
        j = (c.y - oy) * params.scale.y;
    } else {
        i = c.x;
        j = c.y;
        k = c.z;
    }
    let inside = i >= -0.5 && i <= w - 0.5 && j >= -0.5 && j <= h - 0.5 && k >= -0.5
        && k <= f32(kk) - 0.5;
    if inside {
        return vec4<f32>(i, j, k, 1.0);
    }
    return vec4<f32>(0.0);
}

// 1.0 where slice k failed to decode, else 0.0 (read without a branch).
fn failed(k: i32) -> f32 {
    return slices[k].rescale.z;
}

// The coverage of a sample between slices z0 and z1 at fk: 0 when a failed slice weighs in.
fn cover(z0: i32, z1: i32, fk: f32) -> f32 {
    let bad = max(failed(z0) * select(0.0, 1.0, fk < 1.0), failed(z1) * select(0.0, 1.0, fk > 0.0));
    return 1.0 - step(0.5, bad);
}

// One sample in modality units; y = 0 when there is none.
fn sample(c: vec3<f32>) -> vec2<f32> {
    let v = to_voxel(c);
    if v.w == 0.0 {
        return vec2<f32>(0.0, 0.0);
    }
    let wm = i32(params.dims.x) - 1;
    let hm = i32(params.dims.y) - 1;
    let km = i32(params.dims.z) - 1;
    if !trilinear {
        let x = clamp(i32(floor(v.x + 0.5)), 0, wm);
        let y = clamp(i32(floor(v.y + 0.5)), 0, hm);
        let z = clamp(i32(floor(v.z + 0.5)), 0, km);
        let cv = cover(z, z, 0.0);
        return vec2<f32>(value(x, y, z) * cv, cv);
    }
    let i0 = floor(v.x);
    let j0 = floor(v.y);
    let fi = v.x - i0;
    let fj = v.y - j0;
    let x0 = clamp(i32(i0), 0, wm);
    let x1 = clamp(i32(i0) + 1, 0, wm);
    let y0 = clamp(i32(j0), 0, hm);
    let y1 = clamp(i32(j0) + 1, 0, hm);
    if on_one_slice {
        // The slice's brick is bound alone and its place, rescale and failed flag are in
        // `params`: no slice-table read per pixel.
        let o = params.one_slice.xyz;
        let s00 = stored(0, vec3<i32>(o.x + x0, o.y + y0, o.z));
        let s10 = stored(0, vec3<i32>(o.x + x1, o.y + y0, o.z));
        let s01 = stored(0, vec3<i32>(o.x + x0, o.y + y1, o.z));
        let s11 = stored(0, vec3<i32>(o.x + x1, o.y + y1, o.z));
        let top = s00 * (1.0 - fi) + s10 * fi;
        let bottom = s01 * (1.0 - fi) + s11 * fi;
        let r = params.one_rescale;
        let cv = 1.0 - step(0.5, r.z);
        return vec2<f32>(((top * (1.0 - fj) + bottom * fj) * r.x + r.y) * cv, cv);
    }
    let k0 = floor(v.z);
    // Within ON_SLICE of a slice, on it (the one-slice variant's tolerance): a stack off its
    // axis by rounding must not weigh in a failed neighbour. CPU twin: `snap_to_slice`.
    var fk = v.z - k0;
    fk = select(fk, 0.0, fk < ON_SLICE);
    fk = select(fk, 1.0, fk > 1.0 - ON_SLICE);
    let z0 = clamp(i32(k0), 0, km);
    let z1 = clamp(i32(k0) + 1, 0, km);
    let c0 = plane_value(z0, x0, x1, y0, y1, fi, fj);
    let c1 = plane_value(z1, x0, x1, y0, y1, fi, fj);
    let cv = cover(z0, z1, fk);
    return vec2<f32>((c0 * (1.0 - fk) + c1 * fk) * cv, cv);
}

// Output: (modality value, fraction of slab samples inside the volume).
@fragment
fn fs_resample(@builtin(position) pos: vec4<f32>) -> @location(0) vec2<f32> {
    let px = pos.x;
    let py = pos.y;
    if thin {
        // The loop below with one sample at s = 0, whose combination is the sample itself.
        return sample(params.base.xyz + px * params.step_x.xyz + py * params.step_y.xyz);
    }
    let n = params.fold.z;
    let mode = slab_mode;
    let t = params.scale.w;
    var acc = 0.0;
    if mode == 1u {
        acc = -BIG;
    } else if mode == 2u {
        acc = BIG;
    }
    var count = 0u;
    for (var m = 0u; m < n; m++) {
        let s = (f32(m) + 0.5) * t / f32(n) - 0.5 * t;
        let c = params.base.xyz + px * params.step_x.xyz + py * params.step_y.xyz
            + s * params.step_s.xyz;
        let r = sample(c);
        if r.y > 0.0 {
            count += 1u;
            if mode == 1u {
                acc = max(acc, r.x);
            } else if mode == 2u {
                acc = min(acc, r.x);
            } else {
                acc = acc + r.x;
            }
        }
    }
    if count == 0u {
        return vec2<f32>(0.0, 0.0);
    }
    var value = acc;
    if mode == 0u {
        value = acc / f32(count);
    }
    return vec2<f32>(value, f32(count) / f32(n));
}

// ---- Colour volumes (RGB, `Rgba8Uint` bricks): the grey path above with three channels. ----
// Kept apart from it, so a grey frame does a third of the arithmetic. The geometry (`to_voxel`,
// `slice_origin`) is shared; colour has no rescale. The CPU twin is `resample_rgb_pixel`
// (kernel.rs), which runs the grey math once per channel.

fn load_rgb(b: i32, texel: vec3<i32>) -> vec3<f32> {
    return vec3<f32>(load_texel(b, texel).rgb);
}

fn plane_rgb(k: i32, x0: i32, x1: i32, y0: i32, y1: i32, fi: f32, fj: f32) -> vec3<f32> {
    let o = slice_origin(k);
    let s00 = load_rgb(o.w, vec3<i32>(o.x + x0, o.y + y0, o.z));
    let s10 = load_rgb(o.w, vec3<i32>(o.x + x1, o.y + y0, o.z));
    let s01 = load_rgb(o.w, vec3<i32>(o.x + x0, o.y + y1, o.z));
    let s11 = load_rgb(o.w, vec3<i32>(o.x + x1, o.y + y1, o.z));
    let top = s00 * (1.0 - fi) + s10 * fi;
    let bottom = s01 * (1.0 - fi) + s11 * fi;
    return top * (1.0 - fj) + bottom * fj;
}

// One colour sample (0..255 a channel) and 1, or 0 when there is none.
fn sample_rgb(c: vec3<f32>) -> vec4<f32> {
    let v = to_voxel(c);
    if v.w == 0.0 {
        return vec4<f32>(0.0);
    }
    let wm = i32(params.dims.x) - 1;
    let hm = i32(params.dims.y) - 1;
    let km = i32(params.dims.z) - 1;
    if !trilinear {
        let x = clamp(i32(floor(v.x + 0.5)), 0, wm);
        let y = clamp(i32(floor(v.y + 0.5)), 0, hm);
        let z = clamp(i32(floor(v.z + 0.5)), 0, km);
        let o = slice_origin(z);
        let cv = cover(z, z, 0.0);
        return vec4<f32>(load_rgb(o.w, vec3<i32>(o.x + x, o.y + y, o.z)) * cv, cv);
    }
    let i0 = floor(v.x);
    let j0 = floor(v.y);
    let fi = v.x - i0;
    let fj = v.y - j0;
    let x0 = clamp(i32(i0), 0, wm);
    let x1 = clamp(i32(i0) + 1, 0, wm);
    let y0 = clamp(i32(j0), 0, hm);
    let y1 = clamp(i32(j0) + 1, 0, hm);
    if on_one_slice {
        let k = clamp(i32(round(v.z)), 0, km);
        let cv = cover(k, k, 0.0);
        return vec4<f32>(plane_rgb(k, x0, x1, y0, y1, fi, fj) * cv, cv);
    }
    let k0 = floor(v.z);
    let fk = v.z - k0;
    let z0 = clamp(i32(k0), 0, km);
    let z1 = clamp(i32(k0) + 1, 0, km);
    let c0 = plane_rgb(z0, x0, x1, y0, y1, fi, fj);
    let c1 = plane_rgb(z1, x0, x1, y0, y1, fi, fj);
    let cv = cover(z0, z1, fk);
    return vec4<f32>((c0 * (1.0 - fk) + c1 * fk) * cv, cv);
}

// Output: (red, green, blue, fraction of slab samples inside the volume); a slab combines each
// channel on its own (average, maximum or minimum).
@fragment
fn fs_resample_rgb(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let px = pos.x;
    let py = pos.y;
    if thin {
        return sample_rgb(params.base.xyz + px * params.step_x.xyz + py * params.step_y.xyz);
    }
    let n = params.fold.z;
    let mode = slab_mode;
    let t = params.scale.w;
    var acc = vec3<f32>(0.0);
    if mode == 1u {
        acc = vec3<f32>(-BIG);
    } else if mode == 2u {
        acc = vec3<f32>(BIG);
    }
    var count = 0u;
    for (var m = 0u; m < n; m++) {
        let s = (f32(m) + 0.5) * t / f32(n) - 0.5 * t;
        let c = params.base.xyz + px * params.step_x.xyz + py * params.step_y.xyz
            + s * params.step_s.xyz;
        let r = sample_rgb(c);
        if r.w > 0.0 {
            count += 1u;
            if mode == 1u {
                acc = max(acc, r.rgb);
            } else if mode == 2u {
                acc = min(acc, r.rgb);
            } else {
                acc = acc + r.rgb;
            }
        }
    }
    if count == 0u {
        return vec4<f32>(0.0);
    }
    var value = acc;
    if mode == 0u {
        value = acc / f32(count);
    }
    return vec4<f32>(value, f32(count) / f32(n));
}
