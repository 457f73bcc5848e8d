//! The host side of the `nected-key` command: time arguments, the edited
//! config file's layout, gateway rendering, reading rendered files back and
//! the usage report. Never built for the filter (it reads files, YAML and
//! sockets); the binary in `src/bin/nected-key.rs` parses the arguments.

pub mod edit;
pub mod pretty;
pub mod render;
pub mod usage;
pub mod when;
