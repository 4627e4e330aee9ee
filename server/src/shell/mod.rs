//! The tokio shell around the core. (Being written by the shell work.)
