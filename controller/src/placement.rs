//! Placement: which DEA gets the next instance of an app.
//!
//! Cloud Foundry v1 spread an app's instances: prefer the DEA running the fewest instances of
//! that app, then the one with the most free memory. A DEA without room is never chosen.

use std::collections::HashMap;

use nimbus_protocol::messages::DeaAdvertise;
use uuid::Uuid;

/// The DEA to start one more instance of `app_id` on, given instances already placed in this
/// round (`placed`, by DEA id) that advertisements do not show yet.
pub fn choose(
    deas: &[DeaAdvertise],
    app_id: Uuid,
    memory_mb: u64,
    placed: &HashMap<String, u32>,
) -> Option<String> {
    deas.iter()
        .filter(|dea| dea.available_memory >= memory_mb)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dea(id: &str, free: u64, app: Uuid, count: u32) -> DeaAdvertise {
        DeaAdvertise {
            id: id.into(),
            available_memory: free,
            app_id_to_count: HashMap::from([(app, count)]),
            stacks: vec![],
        }
    }

    #[test]
    fn prefers_the_dea_with_fewest_instances_of_the_app() {
        let app = Uuid::new_v4();
        let deas = [dea("a", 4096, app, 2), dea("b", 1024, app, 0)];
        assert_eq!(
            choose(&deas, app, 128, &HashMap::new()).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn breaks_ties_by_free_memory_and_counts_this_rounds_placements() {
        let app = Uuid::new_v4();
        let deas = [dea("a", 4096, app, 0), dea("b", 2048, app, 0)];
        assert_eq!(
            choose(&deas, app, 128, &HashMap::new()).as_deref(),
            Some("a")
        );
        let placed = HashMap::from([("a".to_string(), 1)]);
        assert_eq!(choose(&deas, app, 128, &placed).as_deref(), Some("b"));
    }

    #[test]
    fn never_chooses_a_dea_without_room() {
        let app = Uuid::new_v4();
        assert_eq!(
            choose(&[dea("a", 64, app, 0)], app, 128, &HashMap::new()),
            None
        );
        assert_eq!(choose(&[], app, 128, &HashMap::new()), None);
    }
}
