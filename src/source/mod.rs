//! The connector framework: what every connector shares. See
//! docs/architecture.md for the data flow.
//!
//! * [`emit`]: what a connector hands the engine (rows, deletions,
//!   checkpoints) and the per-table progress counters;
//! * [`paginate`]: one [`paginate::Paginator`] per kind of pagination, and
//!   the guard that makes every scan terminate;
//! * [`fetch`]: one scan's pages fetched in order, concurrently where they
//!   are independent, aborted when dropped.

pub mod emit;
pub mod fetch;
pub mod paginate;
