//! NATS subjects, one function each. DESIGN.md §4 lists who publishes and who listens.

use uuid::Uuid;

/// DEAs advertise their capacity here every second.
pub const DEA_ADVERTISE: &str = "dea.advertise";
/// A booting controller asks every DEA to advertise at once.
pub const DEA_LOCATE: &str = "dea.locate";
/// Stops instances on every DEA that matches the filter in the body.
pub const DEA_STOP: &str = "dea.stop";
/// DEAs report every instance they run here every second.
pub const DEA_HEARTBEAT: &str = "dea.heartbeat";
/// An instance stopped or crashed.
pub const DROPLET_EXITED: &str = "droplet.exited";
/// The health manager's start and stop requests; one controller of the queue group takes each.
pub const HM_REQUESTS: &str = "cloudcontrollers.hm.requests";
/// The queue group controllers join on [`HM_REQUESTS`].
pub const CONTROLLERS_QUEUE: &str = "cloudcontrollers";
/// A health manager starting up; DEAs heartbeat at once.
pub const HEALTHMANAGER_START: &str = "healthmanager.start";
/// Asks the health manager how apps' instances are doing (request/reply).
pub const HEALTHMANAGER_HEALTH: &str = "healthmanager.health";
/// Adds an endpoint to the routers' tables.
pub const ROUTER_REGISTER: &str = "router.register";
/// Removes an endpoint from the routers' tables.
pub const ROUTER_UNREGISTER: &str = "router.unregister";
/// A router announces itself; every registrar re-registers at once.
pub const ROUTER_START: &str = "router.start";
/// Asks a router for its register interval (request/reply).
pub const ROUTER_GREET: &str = "router.greet";
/// Staging requests go to this queue group; one stager takes each.
pub const STAGING: &str = "staging";
/// The queue group stagers join on [`STAGING`].
pub const STAGING_QUEUE: &str = "staging";
/// Subject filter of the JetStream stream that keeps every app's recent logs.
pub const LOGS_ALL: &str = "logs.>";
/// Subject filter of the JetStream stream that keeps every app's recent events.
pub const EVENTS_ALL: &str = "events.>";

/// Start requests for one DEA.
pub fn dea_start(dea_id: &str) -> String {
    format!("dea.{dea_id}.start")
}

/// Staging output lines of one staging job.
pub fn staging_log(staging_id: Uuid) -> String {
    format!("staging.{staging_id}.log")
}

/// The result of one staging job.
pub fn staging_done(staging_id: Uuid) -> String {
    format!("staging.{staging_id}.done")
}

/// Log lines of one app: its instances, its staging, the router and the controller.
pub fn logs(app_id: Uuid) -> String {
    format!("logs.{app_id}")
}

/// Platform events of one app (limits hit, traps, crashes).
pub fn events(app_id: Uuid) -> String {
    format!("events.{app_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_per_entity_subjects() {
        let id = Uuid::nil();
        assert_eq!(dea_start("d1"), "dea.d1.start");
        assert_eq!(
            staging_log(id),
            "staging.00000000-0000-0000-0000-000000000000.log"
        );
        assert_eq!(
            staging_done(id),
            "staging.00000000-0000-0000-0000-000000000000.done"
        );
        assert_eq!(logs(id), "logs.00000000-0000-0000-0000-000000000000");
        assert_eq!(events(id), "events.00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn per_app_log_subjects_fall_under_the_stream_filter() {
        let prefix = LOGS_ALL.trim_end_matches('>');
        assert!(logs(Uuid::new_v4()).starts_with(prefix));
    }
}
