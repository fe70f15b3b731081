//! Unit tests of the semantic lens: planted classes, σ → 0, shuffled classes, drift of identical
//! descriptors.
