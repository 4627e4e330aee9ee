//! Durable storage. (Being written by the storage work.)
