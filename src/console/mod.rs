//! The clearing console (issue 27): read-only web pages for the national
//! operator — the month's statement and positions, the home × treatment heat
//! map, advance funds, reconciliation, trends — server-rendered with maud,
//! charts as inline SVG, the one style sheet inline: nothing is fetched and
//! no page runs a script. Viewers are named in the config by their token's
//! SHA-256 ([`auth`]). The HTTP edge is `operator::console`.

pub mod agency;
pub mod auth;
mod charts;
pub mod config;
pub mod http;
pub mod pages;
