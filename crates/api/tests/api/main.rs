//! End-to-end tests of the API over real HTTP, with real Postgres and Redis. One test binary
//! (modules below) so the suite links once.

mod auth;
mod cli;
mod contract;
mod enqueue;
mod github;
mod hardening;
mod helpers;
mod logs;
mod mcp;
mod openapi;
mod operate;
mod read;
mod relay;
mod shutdown;
mod startup;
mod ui;
mod ui_actions;
mod ui_live;
mod validation;
