//! syntax layer (see DESIGN.md).
