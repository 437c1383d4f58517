//! System facts for anonymous statistics, read from a root directory.
