//! `wait`: readiness over connections, queues and process sentinels.
