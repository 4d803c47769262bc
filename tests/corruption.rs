//! No panics on input, ever: real files of every codec, truncated at many lengths and with bytes
//! overwritten, go through header reading and frame decoding. Each must give a result or a
//! named error; a panic anywhere fails the test (and a crash in a C decoder would end it).

use std::path::Path;

use imaging::decode::decode_frame_values;
use imaging::header::read_header;

use crate::support::{shared_dicom, tempdir};

const FILES: &[&str] = &[
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm",
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm",
    "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
    "codecs/htj2k/dicom/htj2k/MR1_JPH",
    "codecs/pydicom_misc/dicom/misc/eCT_Supplemental.dcm",
];

fn exercise(path: &Path) {
    let outcome = std::panic::catch_unwind(|| {
        if read_header(path).is_ok() {
            let _ = decode_frame_values(path, 0);
        }
    });
    assert!(outcome.is_ok(), "panic on {}", path.display());
}

#[test]
fn truncated_and_overwritten_files_never_panic() {
    let Some(root) = shared_dicom() else { return };
    let dir = tempdir();
    let target = dir.path().join("case.dcm");
    let mut runs = 0;
    for name in FILES {
        let original = std::fs::read(root.join(name)).unwrap();
        let n = original.len();
        // Truncations: inside the preamble, the meta group, the data set, the pixel data.
        let cuts = (0..40)
            .map(|i| n * i / 40)
            .chain([0, 1, 131, 132, 140, 200, n - 1]);
        for cut in cuts {
            std::fs::write(&target, &original[..cut.min(n)]).unwrap();
            exercise(&target);
            runs += 1;
        }
        // Overwrites: runs of 0xFF / 0x00 / a pattern at spread positions, deterministic.
        for i in 0..60usize {
            let mut bytes = original.clone();
            let at = 132 + (i * 7919 * 31) % (n - 140);
            let fill = [0xFFu8, 0x00, 0x5A][i % 3];
            for b in bytes.iter_mut().skip(at).take(1 + i % 9) {
                *b = fill;
            }
            std::fs::write(&target, &bytes).unwrap();
            exercise(&target);
            runs += 1;
        }
    }
    assert!(runs > 700);
}
