//! Placement: which DEA gets the next instance of an app.
//!
//! Cloud Foundry v1 spread an app's instances: prefer the DEA running the fewest instances of
//! that app, then the one with the most free memory. A DEA without room, one that does not run
//! the droplet's kind (its `stacks`) or one that is evacuating is never chosen.

use std::collections::HashMap;

use nimbus_protocol::DropletKind;
use nimbus_protocol::messages::DeaAdvertise;
use uuid::Uuid;

/// The DEA to start one more instance of `app_id` on, given instances already placed in this
/// round (`placed`, by DEA id) that advertisements do not show yet.
pub fn choose(
    deas: &[DeaAdvertise],
    app_id: Uuid,
    kind: DropletKind,
    memory_mb: u64,
    placed: &HashMap<String, u32>,
) -> Option<String> {
    deas.iter()
        .filter(|dea| !dea.evacuating && dea.available_memory >= memory_mb && runs(dea, kind))
        .min_by_key(|dea| {
            let here = dea.app_id_to_count.get(&app_id).copied().unwrap_or(0)
                + placed.get(&dea.id).copied().unwrap_or(0);
            (
                here,
                std::cmp::Reverse(dea.available_memory),
                dea.id.clone(),
            )
        })
        .map(|dea| dea.id.clone())
}

/// Whether the DEA runs droplets of `kind`. DEAs that advertise no stacks predate the field and
/// run HTTP components only.
fn runs(dea: &DeaAdvertise, kind: DropletKind) -> bool {
    if dea.stacks.is_empty() {
        return kind == DropletKind::HttpComponent;
    }
    dea.stacks.iter().any(|stack| stack == kind.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: DropletKind = DropletKind::HttpComponent;

    fn dea(id: &str, free: u64, app: Uuid, count: u32) -> DeaAdvertise {
        DeaAdvertise {
            id: id.into(),
            available_memory: free,
            app_id_to_count: HashMap::from([(app, count)]),
            stacks: vec!["http-component".into(), "wagi".into()],
            evacuating: false,
        }
    }

    #[test]
    fn never_chooses_a_dea_that_does_not_run_the_kind() {
        let app = Uuid::new_v4();
        let mut old = dea("old", 4096, app, 0);
        old.stacks.clear();
        let mut http_only = dea("http", 4096, app, 0);
        http_only.stacks = vec!["http-component".into()];
        let deas = [old, http_only];
        let none = HashMap::new();
        assert_eq!(choose(&deas, app, DropletKind::Wagi, 128, &none), None);
        assert!(choose(&deas, app, HTTP, 128, &none).is_some());
        let all = [dea("new", 1024, app, 0)];
        assert_eq!(
            choose(&all, app, DropletKind::Wagi, 128, &none).as_deref(),
            Some("new")
        );
    }

    #[test]
    fn prefers_the_dea_with_fewest_instances_of_the_app() {
        let app = Uuid::new_v4();
        let deas = [dea("a", 4096, app, 2), dea("b", 1024, app, 0)];
        assert_eq!(
            choose(&deas, app, HTTP, 128, &HashMap::new()).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn breaks_ties_by_free_memory_and_counts_this_rounds_placements() {
        let app = Uuid::new_v4();
        let deas = [dea("a", 4096, app, 0), dea("b", 2048, app, 0)];
        assert_eq!(
            choose(&deas, app, HTTP, 128, &HashMap::new()).as_deref(),
            Some("a")
        );
        let placed = HashMap::from([("a".to_string(), 1)]);
        assert_eq!(choose(&deas, app, HTTP, 128, &placed).as_deref(), Some("b"));
    }

    #[test]
    fn never_chooses_a_dea_without_room() {
        let app = Uuid::new_v4();
        assert_eq!(
            choose(&[dea("a", 64, app, 0)], app, HTTP, 128, &HashMap::new()),
            None
        );
        assert_eq!(choose(&[], app, HTTP, 128, &HashMap::new()), None);
    }
}
