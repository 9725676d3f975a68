//! Integration tests: the real server on 127.0.0.1:0, driven over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod admin;
mod authz;
mod bad_input;
mod chathost;
mod cli;
mod cluster_media;
mod common;
mod conferences;
mod events;
mod extapi_gaps;
mod files;
mod gelf;
mod http;
mod http_limits;
mod integrity;
mod login;
mod login_limits;
mod media;
mod nodes;
mod polling;
mod presence;
mod reference;
mod register;
mod s3;
mod sessions;
mod vsp_media;
mod web;
mod websocket;
