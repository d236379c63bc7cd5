//! Paths of the test plugins the noisy-neighbour benchmark uploads, built
//! from `tests/plugins/` by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
