//! The image: file format (docs/IMAGE_FORMAT.md), item encoding, and a
//! reader that validates a whole image.

pub mod chain;
pub mod codec;
pub mod format;
pub mod mac;
pub mod model;
pub mod peek;
pub mod read;
pub mod show;
pub mod verify;
