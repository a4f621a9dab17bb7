//! Exactly-once state stores for transforms (see ARCHITECTURE.md, "State").

mod local;
