//! Integration tests: real syncs against the built-in playground into
//! temporary DuckDB files and Parquet datasets, compared with the
//! playground's ground truth, and the destination conformance suite.

mod cli;
mod common;
mod delta;
mod destination;
mod dests;
mod egnyte;
mod fivetran;
mod hostile;
mod layers;
mod model;
mod namespace;
mod naming;
mod parquet;
mod prefect;
mod prefect_server;
mod pyenv;
mod readers;
mod rest;
mod tester;
mod userflow;
