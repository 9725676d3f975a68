//! # confer-bus: the single-node event bus and session registry
//!
//! [`LocalRegistry`] keeps live sessions and conference rooms in this process;
//! [`LocalBus`] keeps subscriptions and delivers matching events through the registry's
//! bounded mailboxes. `confer-bus-redis` wraps both to join several nodes: it keeps using
//! them for this node's own sessions and subscriptions.

mod bus;
mod registry;

pub use bus::LocalBus;
pub use registry::LocalRegistry;
