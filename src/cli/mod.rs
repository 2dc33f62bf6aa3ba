//! Subcommands. Each file owns one subcommand's arguments and behaviour.
pub mod bootstrap;
