//! schism's checker. (Being written: see issue 7.)
pub mod history;
