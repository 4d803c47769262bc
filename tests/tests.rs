//! The one integration test binary (ripgrep's layout): each module covers one area, regressions
//! are named after their issue.

// A test's unwrap or panic is its failure message; the no-panic rule is for the product.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod app;
mod bad_input;
mod cases;
mod cli;
mod codecs;
mod corruption;
mod dicomweb;
mod dictation;
mod progressive;
mod reference;
mod render;
mod scan;
mod synthetic;
