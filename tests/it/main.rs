//! Integration tests: real syncs against the built-in playground into
//! temporary DuckDB files, compared with the playground's ground truth.

mod cli;
mod common;
mod destination;
mod model;
mod userflow;
