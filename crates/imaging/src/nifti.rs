//! NIfTI-1 export with correct sform and qform, so any NIfTI tool (and dcm2niix's output) can be
//! compared with what Overread assembled.
//!
//! NIfTI world space is RAS+, DICOM patient space LPS+: the first two rows of
//! `patient_from_voxel` change sign. The sform carries the full affine, shear included (gantry
//! tilt); the qform can only hold a rotation, so it gets the orthonormal part (row, column,
//! normal directions) and `pixdim`. Voxels are written as stored (int16/uint16) with
//! `scl_slope`/`scl_inter` when the rescale is uniform, and as float32 modality values, slice
//! by slice, when slices are scaled differently.
//! Uneven slice spacing cannot be represented in NIfTI: the affine is the best fit.

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
const NIFTI_XFORM_SCANNER_ANAT: i16 = 1;
const NIFTI_UNITS_MM: u8 = 2;

/// Write `volume` to `path` (`.nii` or `.nii.gz`).
pub fn write_nifti(volume: &Volume, path: &Path) -> Result<(), ImagingError> {
    let io = |source| ImagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut writer: Box<dyn Write> = if gz {
        Box::new(flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(std::io::BufWriter::new(file))
    };
    write_nifti_to(volume, &mut writer).map_err(io)?;
    writer.flush().map_err(io)?;
    drop(writer);
    Ok(())
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
    let dims = [3i16, nx as i16, ny as i16, nz as i16, 1, 1, 1, 1];
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
    h[123] = NIFTI_UNITS_MM;
    put_i16(&mut h, 252, NIFTI_XFORM_SCANNER_ANAT); // qform_code
    put_i16(&mut h, 254, NIFTI_XFORM_SCANNER_ANAT); // sform_code
    let [b, c, d] = quaternion_bcd(&r);
    let sform = sform_ras(volume);
    for (i, v) in [b, c, d, sform[0][3], sform[1][3], sform[2][3]]
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

/// Quaternion (b, c, d) of a proper rotation matrix, as nifti1_io's `nifti_mat44_to_quatern`
/// (a = sqrt(1 + trace) / 2, with the usual branch when a is small).
fn quaternion_bcd(r: &DMat3) -> [f64; 3] {
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
    if a < 0.0 { [-b, -c, -d] } else { [b, c, d] }
}
