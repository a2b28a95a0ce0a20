//! The cluster map on a node: kept when newer, persisted, and statements routed by an older
//! map refused.

use mycelium_config::StorageConfig;
use mycelium_node::Node;
use mycelium_protocol::{ClusterMap, MapNode, MapPolicy, NodeLink, STALE_MAP};

pub fn map(epoch: u64) -> ClusterMap {
    ClusterMap {
        epoch,
        nodes: vec![MapNode {
            id: "n1".to_owned(),
            node_type: "validator".to_owned(),
            addr: "127.0.0.1:1".to_owned(),
        }],
        default_replication_factor: 1.0,
        min_validator_copies: 1,
        policies: vec![MapPolicy {
            table: "users".to_owned(),
            options: vec![
                ("shard_keys".to_owned(), "id".to_owned()),
                ("shards".to_owned(), "4".to_owned()),
            ],
        }],
        access: 0,
        promotions: Vec::new(),
    }
}

#[tokio::test]
async fn newer_maps_are_kept_and_older_routes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n1.sqlite");
    let node = Node::open_sqlite("n1", false, &file, &StorageConfig::default()).unwrap();
    assert_eq!(node.exchange_map(None).await.unwrap(), None);
    assert_eq!(node.exchange_map(Some(map(5))).await.unwrap(), Some(map(5)));
    // An older offer, or the same epoch with other content, is not taken.
    assert_eq!(node.exchange_map(Some(map(3))).await.unwrap(), Some(map(5)));
    let mut other = map(5);
    other.policies.clear();
    assert_eq!(node.exchange_map(Some(other)).await.unwrap(), Some(map(5)));

    let stale = node.check_epoch(4).unwrap_err();
    assert_eq!(stale.code, "40001");
    assert!(stale.message.starts_with(STALE_MAP), "{}", stale.message);
    for fine in [0, 5, 6] {
        assert!(node.check_epoch(fine).is_ok(), "epoch {fine}");
    }
    // A map that changes only the roles fingerprint moves nothing: epoch-5 routes still run.
    let mut access_only = map(6);
    access_only.access = 7;
    assert_eq!(
        node.exchange_map(Some(access_only.clone())).await.unwrap(),
        Some(access_only)
    );
    assert!(node.check_epoch(5).is_ok());
    let mut moved = map(7);
    moved.policies.clear();
    node.exchange_map(Some(moved)).await.unwrap();
    assert!(node.check_epoch(6).is_err());
    assert!(node.check_epoch(7).is_ok());
    node.exchange_map(Some(map(8))).await.unwrap();

    // The node holds every shard of `users` (the only node), all as primary.
    let status = node.status().await.unwrap();
    assert_eq!(status.map_epoch, 8);
    let users: Vec<_> = status
        .shards
        .iter()
        .filter(|s| s.table == "users")
        .collect();
    assert_eq!(users.len(), 4);
    assert!(users.iter().all(|s| s.primary));
    node.shutdown();
    drop(node);

    // Kept on disk: a reopened node has it before anyone offers it again.
    let node = Node::open_sqlite("n1", false, &file, &StorageConfig::default()).unwrap();
    assert_eq!(node.exchange_map(None).await.unwrap(), Some(map(8)));
    node.shutdown();
}

/// A promotion in the map makes the promoted copy the shard's primary (for every table of the
/// group) under the promotion's epoch; a node reports its roles as the promoted map says.
#[tokio::test]
async fn promotions_in_the_map_switch_primaries() {
    use mycelium_node::Topology;
    use mycelium_protocol::MapPromotion;

    let mut two = map(3);
    two.nodes.push(MapNode {
        id: "n2".to_owned(),
        node_type: "validator".to_owned(),
        addr: "127.0.0.1:2".to_owned(),
    });
    let plain = Topology::new(two.clone()).unwrap();
    let placement = plain.placement("users").unwrap();
    let shard = &placement.shards[1];
    assert_eq!(
        shard.replicas.len(),
        2,
        "replication factor 1: both nodes hold it"
    );
    let secondary = shard.replicas[1].node.clone();
    assert_eq!(plain.primary_epoch("users", 1), 1);

    two.epoch = 4;
    two.promotions.push(MapPromotion {
        group: placement.group.clone(),
        shard: 1,
        node: secondary.clone(),
        epoch: 2,
    });
    let promoted = Topology::new(two.clone()).unwrap();
    assert_eq!(
        promoted.placement("users").unwrap().shards[1].primary(),
        secondary
    );
    assert_eq!(promoted.primary_epoch("users", 1), 2);
    assert_eq!(promoted.primary_epoch("users", 0), 1);
    let held = promoted.held_by(&secondary);
    assert!(
        held.iter()
            .any(|h| h.table == "users" && h.shard == 1 && h.primary)
    );

    // The node that was promoted reports the shard as its primary once it has the map, and
    // the map moved placement: routes of the older map are refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{secondary}.sqlite"));
    let node = Node::open_sqlite(&secondary, false, &file, &StorageConfig::default()).unwrap();
    let mut before = two.clone();
    before.epoch = 3;
    before.promotions.clear();
    node.exchange_map(Some(before)).await.unwrap();
    let led = |status: &mycelium_protocol::NodeStatus| {
        status
            .shards
            .iter()
            .any(|s| s.table == "users" && s.shard == 1 && s.primary)
    };
    assert!(!led(&node.status().await.unwrap()));
    node.exchange_map(Some(two)).await.unwrap();
    assert!(led(&node.status().await.unwrap()));
    assert!(node.check_epoch(3).is_err());
    node.shutdown();
}
