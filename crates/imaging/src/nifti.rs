//! NIfTI-1 export with correct sform and qform, so any NIfTI tool (and dcm2niix's output) can be
//! compared with what Overread assembled.
//!
//! NIfTI world space is RAS+, DICOM patient space LPS+: the first two rows of
//! `patient_from_voxel` change sign. The sform carries the full affine, shear included (gantry
//! tilt); the qform can only hold a rotation, so it is set (to the orthonormal part and
//! `pixdim`) only when there is no shear, and marked unknown otherwise (readers that prefer the
//! qform would misplace a tilted stack by millimetres a slice). Voxels are written as stored
//! (int16/uint16) with `scl_slope`/`scl_inter` when the rescale is uniform, and as float32
//! modality values, slice by slice, when slices are scaled differently.
//!
//! What NIfTI cannot say is said in `descrip` and by the codes: a stack of uneven spacing or
//! missing slices has no exact affine (the one written runs through the first and last slice;
//! the CLI refuses such an export unless asked); frames without position or orientation get
//! both codes unknown (no scanner coordinates), and without Pixel Spacing no spatial unit.

use std::io::Write;
use std::path::Path;

use glam::{DMat3, DVec3};

use super::ImagingError;
use super::decode::{RescalePolicy, Volume, Voxels};

const DT_INT16: i16 = 4;
const DT_FLOAT32: i16 = 16;
const DT_UINT16: i16 = 512;
/// Three bytes a voxel, RGB interleaved (nifti1.h `DT_RGB24`).
const DT_RGB24: i16 = 128;
const NIFTI_XFORM_UNKNOWN: i16 = 0;
const NIFTI_XFORM_SCANNER_ANAT: i16 = 1;
const NIFTI_UNITS_MM: u8 = 2;

/// Write `volume` to `path` (`.nii` or `.nii.gz`): whole or not at all. It is written beside
/// `path` under a temporary name of its own, synced, then renamed into place, so a full disk
/// or a crash leaves no file that looks complete (a folder where no new file may be made, but
/// whose file may be overwritten, gets it written in place).
pub fn write_nifti(volume: &Volume, path: &Path) -> Result<(), ImagingError> {
    let io = |source| ImagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let gz = path.extension().is_some_and(|e| e == "gz");
    match crate::partial::beside(path) {
        Ok(mut partial) => {
            // Dropped on any error, the temporary file is removed.
            write_whole(volume, partial.as_file_mut(), gz).map_err(io)?;
            crate::partial::persist(partial, path).map_err(io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let mut file = std::fs::File::create(path).map_err(io)?;
            let written = write_whole(volume, &mut file, gz);
            if written.is_err() {
                // Not half a file that reads as whole: nothing (it cannot be removed here).
                let _ = file.set_len(0);
            }
            written.map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// The whole file into `file`, gzip finished (its last block and trailer, whose failure a drop
/// would not report), flushed and synced.
fn write_whole(volume: &Volume, file: &mut std::fs::File, gz: bool) -> std::io::Result<()> {
    let mut buffered = std::io::BufWriter::new(&mut *file);
    if gz {
        let mut encoder = flate2::write::GzEncoder::new(buffered, flate2::Compression::fast());
        write_nifti_to(volume, &mut encoder)?;
        buffered = encoder.finish()?;
    } else {
        write_nifti_to(volume, &mut buffered)?;
    }
    buffered.flush()?;
    drop(buffered);
    file.sync_all()
}

/// What `descrip` says of a volume's geometry (at most 79 bytes).
fn description(volume: &Volume) -> &'static str {
    let g = &volume.geometry;
    if !g.trusted {
        "Overread: no patient position in the files; no scanner coordinates"
    } else if !g.irregularity.affine_is_exact() {
        "Overread: uneven or missing slices; the affine is approximate"
    } else if !g.pixel_spacing_known {
        "Overread: no Pixel Spacing; sizes are in pixels"
    } else if g.spacing_at_detector {
        "Overread: Imager Pixel Spacing; sizes are at the detector"
    } else {
        "Overread"
    }
}

/// The NIfTI sform (RAS) of a volume's best-fit affine: rows of a 3x4 matrix.
pub fn sform_ras(volume: &Volume) -> [[f64; 4]; 3] {
    let m = volume.geometry.patient_from_voxel;
    let mut rows: [[f64; 4]; 3] = std::array::from_fn(|r| m.row(r).to_array());
    for row in rows.iter_mut().take(2) {
        for v in row.iter_mut() {
            *v = -*v;
        }
    }
    rows
}

fn write_nifti_to(volume: &Volume, w: &mut dyn Write) -> std::io::Result<()> {
    let g = &volume.geometry;
    let [nx, ny, nz] = g.dims;
    let (datatype, bitpix, slope, inter) = match (&volume.rescale, &volume.voxels) {
        (RescalePolicy::Uniform(r), Voxels::I16(_)) => (DT_INT16, 16, r.slope, r.intercept),
        (RescalePolicy::Uniform(r), Voxels::U16(_)) => (DT_UINT16, 16, r.slope, r.intercept),
        (_, Voxels::Rgb(_)) => (DT_RGB24, 24, 0.0, 0.0),
        (RescalePolicy::PerSlice(_), _) => (DT_FLOAT32, 32, 1.0, 0.0),
    };
    let mut h = vec![0u8; 352];
    let put_i32 =
        |h: &mut [u8], off: usize, v: i32| h[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let put_i16 =
        |h: &mut [u8], off: usize, v: i16| h[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut [u8], off: usize, v: f64| {
        h[off..off + 4].copy_from_slice(&(v as f32).to_le_bytes())
    };
    put_i32(&mut h, 0, 348); // sizeof_hdr
    h[38] = b'r'; // regular
    let dim = |n: usize| {
        i16::try_from(n).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{n} voxels along an axis: NIfTI-1 holds at most 32767"),
            )
        })
    };
    let dims = [3i16, dim(nx)?, dim(ny)?, dim(nz)?, 1, 1, 1, 1];
    for (i, d) in dims.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * i, *d);
    }
    put_i16(&mut h, 70, datatype);
    put_i16(&mut h, 72, bitpix);

    // qform: orthonormal directions (RAS), qfac for a left-handed set.
    let flip = DVec3::new(-1.0, -1.0, 1.0);
    let x = DVec3::from(g.row_direction) * flip;
    let y = DVec3::from(g.column_direction) * flip;
    let step = g.patient_from_voxel.z_axis.truncate() * flip;
    let mut z = DVec3::from(g.slice_normal) * flip;
    if step.dot(z) < 0.0 {
        z = -z;
    }
    let mut r = DMat3::from_cols(x, y, z);
    let qfac = if r.determinant() < 0.0 {
        r = DMat3::from_cols(x, y, -z);
        -1.0
    } else {
        1.0
    };
    let pixdim = [
        qfac,
        g.spacing_mm[0],
        g.spacing_mm[1],
        g.spacing_mm[2].max(1e-6),
        0.0,
        0.0,
        0.0,
        0.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        put_f32(&mut h, 76 + 4 * i, *p);
    }
    put_f32(&mut h, 108, 352.0); // vox_offset
    put_f32(&mut h, 112, slope);
    put_f32(&mut h, 116, inter);
    // Without Pixel Spacing the sizes are pixels: no spatial unit.
    h[123] = if g.pixel_spacing_known {
        NIFTI_UNITS_MM
    } else {
        0
    };
    let descrip = description(volume).as_bytes();
    h[148..148 + descrip.len().min(79)].copy_from_slice(&descrip[..descrip.len().min(79)]);
    let sform_code = if g.trusted {
        NIFTI_XFORM_SCANNER_ANAT
    } else {
        NIFTI_XFORM_UNKNOWN
    };
    let [b, c, d] = stored_quaternion(&r);
    let sform = sform_ras(volume);
    // A rotation cannot hold a shear: a tilted stack's qform is marked unknown. Nor can three
    // float32 numbers hold every rotation (the fourth, derived, is imprecise near 180
    // degrees): a qform that a reader would place more than 0.01 mm from the sform is
    // marked unknown too.
    let q32 = [b, c, d].map(f64::from);
    let offset = [sform[0][3], sform[1][3], sform[2][3]].map(|v| f64::from(v as f32));
    let spacing = [pixdim[1], pixdim[2], pixdim[3]].map(|v| f64::from(v as f32));
    let qform_ok = qform_error_mm(q32, qfac, spacing, offset, &sform, [nx, ny, nz]) <= 0.01;
    let qform_code = if g.trusted && g.irregularity.shear_deg.abs() < 1e-3 && qform_ok {
        NIFTI_XFORM_SCANNER_ANAT
    } else {
        NIFTI_XFORM_UNKNOWN
    };
    put_i16(&mut h, 252, qform_code);
    put_i16(&mut h, 254, sform_code);
    for (i, v) in [
        f64::from(b),
        f64::from(c),
        f64::from(d),
        sform[0][3],
        sform[1][3],
        sform[2][3],
    ]
    .iter()
    .enumerate()
    {
        put_f32(&mut h, 256 + 4 * i, *v);
    }
    for (row, values) in sform.iter().enumerate() {
        for (col, v) in values.iter().enumerate() {
            put_f32(&mut h, 280 + 16 * row + 4 * col, *v);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    w.write_all(&h)?;

    let mut buf = Vec::new();
    for k in 0..nz {
        buf.clear();
        match (&volume.rescale, &volume.voxels) {
            (RescalePolicy::Uniform(_), voxels) | (_, voxels @ Voxels::Rgb(_)) => {
                buf.extend(voxels.to_le_bytes_slice(k))
            }
            (RescalePolicy::PerSlice(_), Voxels::U16(a)) => {
                let r = volume.rescale.for_slice(k);
                for v in a.index_axis(ndarray::Axis(0), k) {
                    buf.extend_from_slice(&(r.apply(f64::from(*v)) as f32).to_le_bytes());
                }
            }
            (RescalePolicy::PerSlice(_), Voxels::I16(a)) => {
                let r = volume.rescale.for_slice(k);
                for v in a.index_axis(ndarray::Axis(0), k) {
                    buf.extend_from_slice(&(r.apply(f64::from(*v)) as f32).to_le_bytes());
                }
            }
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// The quaternion (b, c, d) of rotation `r` as float32, as stored. A rotation of 180 degrees
/// (a = 0: what LPS to RAS makes of an axial stack, and of one tilted about a single axis)
/// rounded to float32 can leave 1 - (b² + c² + d²) a hair above 0, which a reader takes for
/// a = 2e-4 (0.1 mm at 300 mm); its largest component is then moved outward by a unit in
/// the last place until the sum reaches 1, where every reader takes a = 0.
fn stored_quaternion(r: &DMat3) -> [f32; 3] {
    let [a, q @ ..] = quaternion_abcd(r);
    let mut q = q.map(|v| v as f32);
    if a.abs() < 1e-7 {
        for _ in 0..8 {
            let sum: f64 = q.iter().map(|v| f64::from(*v).powi(2)).sum();
            if sum >= 1.0 {
                break;
            }
            let big = (0..3)
                .max_by(|&x, &y| q[x].abs().total_cmp(&q[y].abs()))
                .unwrap_or(0);
            let v = q[big];
            q[big] = if v >= 0.0 { v.next_up() } else { v.next_down() };
        }
    }
    q
}

/// The largest distance, over the grid's corners, between where a reader puts a voxel by the
/// qform and by the sform (float32, as stored). Readers derive the quaternion's first
/// component in several ways: nifti1_io (and ITK with it) takes a = 0 and rescales (b, c, d)
/// when 1 - (b² + c² + d²) is below 1e-7; nibabel takes sqrt(max(0, 1 - ...)), or, in recent
/// releases, 0 when that is within 3 float32 epsilons of 0. The worst counts.
fn qform_error_mm(
    [b, c, d]: [f64; 3],
    qfac: f64,
    spacing: [f64; 3],
    offset: [f64; 3],
    sform: &[[f64; 4]; 3],
    [nx, ny, nz]: [usize; 3],
) -> f64 {
    let rest = 1.0 - (b * b + c * c + d * d);
    let nifti1_io = if rest < 1e-7 {
        let n = (b * b + c * c + d * d).sqrt();
        [0.0, b / n, c / n, d / n]
    } else {
        [rest.sqrt(), b, c, d]
    };
    // nibabel before 5 took a = 0 below 0 only; since, also for |rest| < 3 float32 eps.
    let nibabel_old = [rest.max(0.0).sqrt(), b, c, d];
    let nibabel = if rest.abs() < 3.0 * f64::from(f32::EPSILON) {
        [0.0, b, c, d]
    } else {
        nibabel_old
    };
    let sform32 = sform.map(|row| row.map(|v| f64::from(v as f32)));
    let mut worst: f64 = 0.0;
    for [a, b, c, d] in [nifti1_io, nibabel_old, nibabel] {
        let r = DMat3::from_cols(
            DVec3::new(
                a * a + b * b - c * c - d * d,
                2.0 * (b * c + a * d),
                2.0 * (b * d - a * c),
            ),
            DVec3::new(
                2.0 * (b * c - a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d + a * b),
            ),
            DVec3::new(
                2.0 * (b * d + a * c),
                2.0 * (c * d - a * b),
                a * a + d * d - c * c - b * b,
            ),
        );
        for corner in 0..8 {
            let v = DVec3::new(
                if corner & 1 == 0 {
                    0.0
                } else {
                    nx.saturating_sub(1) as f64
                },
                if corner & 2 == 0 {
                    0.0
                } else {
                    ny.saturating_sub(1) as f64
                },
                if corner & 4 == 0 {
                    0.0
                } else {
                    nz.saturating_sub(1) as f64
                },
            );
            let scaled = DVec3::new(v.x * spacing[0], v.y * spacing[1], v.z * spacing[2] * qfac);
            let by_qform = r * scaled + DVec3::from(offset);
            let by_sform = DVec3::from_array(std::array::from_fn(|row| {
                sform32[row][0] * v.x
                    + sform32[row][1] * v.y
                    + sform32[row][2] * v.z
                    + sform32[row][3]
            }));
            worst = worst.max((by_qform - by_sform).length());
        }
    }
    worst
}

/// Quaternion (a, b, c, d) of a proper rotation matrix, as nifti1_io's
/// `nifti_mat44_to_quatern` (a = sqrt(1 + trace) / 2, with the usual branch when a is small),
/// with a >= 0.
fn quaternion_abcd(r: &DMat3) -> [f64; 4] {
    let (r11, r12, r13) = (r.x_axis.x, r.y_axis.x, r.z_axis.x);
    let (r21, r22, r23) = (r.x_axis.y, r.y_axis.y, r.z_axis.y);
    let (r31, r32, r33) = (r.x_axis.z, r.y_axis.z, r.z_axis.z);
    let a = r11 + r22 + r33 + 1.0;
    let (a, b, c, d) = if a > 0.5 {
        let a = 0.5 * a.sqrt();
        (
            a,
            0.25 * (r32 - r23) / a,
            0.25 * (r13 - r31) / a,
            0.25 * (r21 - r12) / a,
        )
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            (
                0.25 * (r32 - r23) / b,
                b,
                0.25 * (r12 + r21) / b,
                0.25 * (r13 + r31) / b,
            )
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            (
                0.25 * (r13 - r31) / c,
                0.25 * (r12 + r21) / c,
                c,
                0.25 * (r23 + r32) / c,
            )
        } else {
            let d = 0.5 * zd.sqrt();
            (
                0.25 * (r21 - r12) / d,
                0.25 * (r13 + r31) / d,
                0.25 * (r23 + r32) / d,
                d,
            )
        }
    };
    if a < 0.0 {
        [-a, -b, -c, -d]
    } else {
        [a, b, c, d]
    }
}
