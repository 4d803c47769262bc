//! The one integration test binary (ripgrep's layout): each module covers one area, regressions
//! are named after their issue.

mod support;

mod codecs;
mod reference;
