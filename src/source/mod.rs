//! The connector framework: what connectors hand the engine. (Growing: see
//! docs/architecture.md once paginators, fetching and scan strategies move
//! here.)

pub mod emit;
