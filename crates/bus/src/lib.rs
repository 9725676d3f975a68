//! # confer-bus: the single-node event bus and session registry
//!
//! [`LocalRegistry`] keeps live sessions and conference rooms in this process;
//! [`LocalBus`] keeps subscriptions and delivers matching events through the registry's
//! bounded mailboxes. A Redis-backed pair implementing the same core traits will join
//! several nodes.

mod bus;
mod registry;

pub use bus::LocalBus;
pub use registry::LocalRegistry;
