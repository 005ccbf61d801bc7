//! The connector framework: what every connector shares. See
//! docs/architecture.md for the data flow.
//!
//! * [`emit`]: what a connector hands the engine (rows, deletions,
//!   checkpoints) and the per-table progress counters;
//! * [`paginate`]: one [`paginate::Paginator`] per kind of pagination, and
//!   the guard that makes every scan terminate;
//! * [`fetch`]: one scan's pages fetched in order, concurrently where they
//!   are independent, aborted when dropped;
//! * [`scan`]: scan strategies and their typed, versioned state (a full
//!   scan that soft-deletes what it did not see, only with evidence that
//!   it saw everything).

pub mod emit;
pub mod fetch;
pub mod paginate;
pub mod scan;
