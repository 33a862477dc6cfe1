//! The independent checker (to be written).
