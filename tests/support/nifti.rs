//! A small, independent NIfTI-1 reader (header per the NIfTI-1 standard, nifti1.h), for
//! comparing against dcm2niix and dicom2nifti output. Written separately from
//! `imaging::nifti` (the writer) so that neither can hide the other's mistake.

use std::io::Read;
use std::path::Path;

use glam::{DMat3, DMat4, DVec3, DVec4};

#[derive(Debug, Clone)]
pub struct Nifti {
    /// nx, ny, nz, nt (nt = 1 for 3D).
    pub dims: [usize; 4],
    pub datatype: i16,
    pub scl_slope: f64,
    pub scl_inter: f64,
    /// voxel -> RAS mm (sform when set, else qform).
    pub ras_from_voxel: DMat4,
    pub sform_code: i16,
    pub qform_code: i16,
    /// Raw voxel values (before scl_slope/scl_inter), x fastest, then y, z, t; colour voxels
    /// as 0xRRGGBB.
    pub values: Vec<f64>,
}

impl Nifti {
    pub fn read(path: &Path) -> Nifti {
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut bytes)
                .unwrap();
        } else {
            std::io::BufReader::new(file)
                .read_to_end(&mut bytes)
                .unwrap();
        }
        Self::parse(&bytes)
    }

    pub fn parse(b: &[u8]) -> Nifti {
        let le = i32::from_le_bytes(b[0..4].try_into().unwrap()) == 348;
        let i16_at = |o: usize| {
            let a = [b[o], b[o + 1]];
            if le {
                i16::from_le_bytes(a)
            } else {
                i16::from_be_bytes(a)
            }
        };
        let f32_at = |o: usize| {
            let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
            f64::from(if le {
                f32::from_le_bytes(a)
            } else {
                f32::from_be_bytes(a)
            })
        };
        let ndim = i16_at(40) as usize;
        let dim = |n: usize| {
            if n <= ndim {
                (i16_at(40 + 2 * n) as usize).max(1)
            } else {
                1
            }
        };
        let dims = [dim(1), dim(2), dim(3), dim(4)];
        let datatype = i16_at(70);
        let pixdim: Vec<f64> = (0..8).map(|n| f32_at(76 + 4 * n)).collect();
        let vox_offset = f32_at(108) as usize;
        let mut scl_slope = f32_at(112);
        let scl_inter = f32_at(116);
        if scl_slope == 0.0 {
            scl_slope = 1.0;
        }
        let qform_code = i16_at(252);
        let sform_code = i16_at(254);
        let ras_from_voxel = if sform_code > 0 {
            let row =
                |o: usize| DVec4::new(f32_at(o), f32_at(o + 4), f32_at(o + 8), f32_at(o + 12));
            let (x, y, z) = (row(280), row(296), row(312));
            DMat4::from_cols(
                DVec4::new(x.x, y.x, z.x, 0.0),
                DVec4::new(x.y, y.y, z.y, 0.0),
                DVec4::new(x.z, y.z, z.z, 0.0),
                DVec4::new(x.w, y.w, z.w, 1.0),
            )
        } else {
            // qform (method 2 of nifti1.h).
            let (mut qb, mut qc, mut qd) = (f32_at(256), f32_at(260), f32_at(264));
            // As nifti1_io's quatern_to_mat44: near a 180° rotation a = 0 and b, c, d are
            // renormalized (float32 b, c, d cannot give a precisely).
            let rest = 1.0 - (qb * qb + qc * qc + qd * qd);
            let qa = if rest < 1e-7 {
                let norm = (qb * qb + qc * qc + qd * qd).sqrt();
                qb /= norm;
                qc /= norm;
                qd /= norm;
                0.0
            } else {
                rest.sqrt()
            };
            let r = DMat3::from_cols(
                DVec3::new(
                    qa * qa + qb * qb - qc * qc - qd * qd,
                    2.0 * (qb * qc + qa * qd),
                    2.0 * (qb * qd - qa * qc),
                ),
                DVec3::new(
                    2.0 * (qb * qc - qa * qd),
                    qa * qa + qc * qc - qb * qb - qd * qd,
                    2.0 * (qc * qd + qa * qb),
                ),
                DVec3::new(
                    2.0 * (qb * qd + qa * qc),
                    2.0 * (qc * qd - qa * qb),
                    qa * qa + qd * qd - qc * qc - qb * qb,
                ),
            );
            let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
            DMat4::from_cols(
                (r.x_axis * pixdim[1]).extend(0.0),
                (r.y_axis * pixdim[2]).extend(0.0),
                (r.z_axis * pixdim[3] * qfac).extend(0.0),
                DVec4::new(f32_at(268), f32_at(272), f32_at(276), 1.0),
            )
        };
        let n = dims.iter().product::<usize>();
        let data = &b[vox_offset..];
        let values: Vec<f64> = match datatype {
            2 => data[..n].iter().map(|v| f64::from(*v)).collect(),
            256 => data[..n].iter().map(|v| f64::from(*v as i8)).collect(),
            4 => data
                .chunks_exact(2)
                .take(n)
                .map(|c| {
                    f64::from(if le {
                        i16::from_le_bytes([c[0], c[1]])
                    } else {
                        i16::from_be_bytes([c[0], c[1]])
                    })
                })
                .collect(),
            512 => data
                .chunks_exact(2)
                .take(n)
                .map(|c| {
                    f64::from(if le {
                        u16::from_le_bytes([c[0], c[1]])
                    } else {
                        u16::from_be_bytes([c[0], c[1]])
                    })
                })
                .collect(),
            8 => data
                .chunks_exact(4)
                .take(n)
                .map(|c| {
                    f64::from(if le {
                        i32::from_le_bytes(c.try_into().unwrap())
                    } else {
                        i32::from_be_bytes(c.try_into().unwrap())
                    })
                })
                .collect(),
            16 => data
                .chunks_exact(4)
                .take(n)
                .map(|c| {
                    f64::from(if le {
                        f32::from_le_bytes(c.try_into().unwrap())
                    } else {
                        f32::from_be_bytes(c.try_into().unwrap())
                    })
                })
                .collect(),
            64 => data
                .chunks_exact(8)
                .take(n)
                .map(|c| {
                    if le {
                        f64::from_le_bytes(c.try_into().unwrap())
                    } else {
                        f64::from_be_bytes(c.try_into().unwrap())
                    }
                })
                .collect(),
            // RGB24 and RGBA32 (nifti1.h DT_RGB24, DT_RGBA32): each voxel as 0xRRGGBB.
            128 | 2304 => {
                let size = if datatype == 128 { 3 } else { 4 };
                data.chunks_exact(size)
                    .take(n)
                    .map(|c| f64::from(u32::from_be_bytes([0, c[0], c[1], c[2]])))
                    .collect()
            }
            other => panic!("NIfTI datatype {other} not handled by the test reader"),
        };
        assert_eq!(values.len(), n, "NIfTI data shorter than its dims");
        Nifti {
            dims,
            datatype,
            scl_slope,
            scl_inter,
            ras_from_voxel,
            sform_code,
            qform_code,
            values,
        }
    }

    /// DICOM patient (LPS) position of voxel (i, j, k).
    pub fn lps_of(&self, i: f64, j: f64, k: f64) -> DVec3 {
        let p = self.ras_from_voxel * DVec4::new(i, j, k, 1.0);
        DVec3::new(-p.x, -p.y, p.z)
    }

    /// Raw value at (i, j, k, t).
    pub fn raw(&self, i: usize, j: usize, k: usize, t: usize) -> f64 {
        let [nx, ny, nz, _] = self.dims;
        self.values[((t * nz + k) * ny + j) * nx + i]
    }
}
