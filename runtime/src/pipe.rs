//! `Pipe`: typed two-way (or one-way) connections between processes.
