//! The renderers: each formats a [`super::ReportModel`] and computes nothing of its own.

pub(crate) mod dense;
mod directions;
pub(crate) mod html;
pub(crate) mod markdown;
mod semantic;
