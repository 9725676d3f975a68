//! One module per scenario: each prepares its servers and clients, drives them, and returns
//! the measured figures as `Row`s (`crate::report`).

pub(crate) mod crowd;
pub(crate) mod drops;
pub(crate) mod fanout;
pub(crate) mod idle;
pub(crate) mod ingest;
pub(crate) mod logins;
pub(crate) mod peak;
pub(crate) mod sfu;
pub(crate) mod storm;
