//! Placement and hashing: pinned values and properties.

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::*;

fn nodes(validators: usize, miners: usize) -> Vec<NodeInfo> {
    (0..validators)
        .map(|i| NodeInfo {
            id: format!("v{i}"),
            node_type: NodeType::Validator,
        })
        .chain((0..miners).map(|i| NodeInfo {
            id: format!("m{i}"),
            node_type: NodeType::Miner,
        }))
        .collect()
}

fn policy(shards: u32, rf: f64) -> TablePolicy {
    let mut p = TablePolicy::default_for("users", &PolicyDefaults::default());
    p.shard_keys = vec!["id".to_owned()];
    p.shards = shards;
    p.replication_factor = rf;
    p.min_validator_copies = 0;
    p
}

#[test]
fn hash_values_are_pinned() {
    // Text that is an integer or a UUID hashes as that value, however it is spelled.
    // If one of these changes, existing data would be looked for on the wrong shard.
    let pinned = [
        (
            vec![KeyValue::Int(1)],
            key_hash(&[KeyValue::from_text("1")]),
        ),
        (
            vec![KeyValue::from_text("00000000-0000-0000-0000-000000000001")],
            key_hash(&[KeyValue::from_text("{00000000000000000000000000000001}")]),
        ),
    ];
    for (key, expected) in pinned {
        assert_eq!(key_hash(&key), expected);
    }
    assert_eq!(key_hash(&[KeyValue::Int(1)]), PINNED_INT_1);
    assert_eq!(
        key_hash(&[KeyValue::Text("alice".to_owned())]),
        PINNED_TEXT_ALICE
    );
    assert_eq!(
        key_hash(&[KeyValue::Int(7), KeyValue::Text("x".to_owned())]),
        PINNED_COMPOSITE
    );
}

const PINNED_INT_1: u64 = 1_342_664_267_066_851_118;
const PINNED_TEXT_ALICE: u64 = 1_601_018_737_374_672_322;
const PINNED_COMPOSITE: u64 = 2_271_165_435_111_886_476;

#[test]
fn range_sharding_uses_split_points() {
    let mut p = policy(4, 0.5);
    p.range_sharding = true;
    p.ranges = vec![1000, 5000, 20000];
    let shard = |k: i64| p.shard_of(&[KeyValue::Int(k)]);
    assert_eq!(
        (
            shard(-5),
            shard(999),
            shard(1000),
            shard(4999),
            shard(5000),
            shard(20000)
        ),
        (0, 0, 1, 1, 2, 3)
    );
}

#[test]
fn impossible_policies_are_refused() {
    let mut p = policy(4, 0.5);
    p.min_validator_copies = 3;
    assert!(place(&p, &nodes(2, 1)).is_err());
    let mut p = policy(4, 0.5);
    p.validator_only = true;
    assert!(place(&p, &nodes(0, 3)).is_err());
    assert!(place(&policy(4, 0.0), &nodes(2, 1)).is_err());
    assert!(place(&policy(0, 0.5), &nodes(2, 1)).is_err());
}

proptest! {
    #[test]
    fn placement_honours_the_policy(
        validators in 1usize..6,
        miners in 0usize..5,
        shards in 1u32..16,
        rf in 0.05f64..1.0,
        validator_only in any::<bool>(),
        min_validators in 0usize..3,
    ) {
        let cluster = nodes(validators, miners);
        let mut p = policy(shards, rf);
        p.validator_only = validator_only;
        p.min_validator_copies = min_validators.min(validators);
        let placement = place(&p, &cluster).expect("placeable");
        let expected = copies(&p, &cluster).expect("copies");
        prop_assert_eq!(placement.shards.len() as u32, shards);
        for shard in &placement.shards {
            let set: BTreeSet<&str> = shard.replicas.iter().map(|r| r.node.as_str()).collect();
            prop_assert_eq!(set.len(), expected, "distinct copies");
            prop_assert_eq!(shard.replicas[0].role, ReplicaRole::Primary);
            let validator_copies = shard.replicas.iter().filter(|r| r.node.starts_with('v')).count();
            prop_assert!(validator_copies >= p.min_validator_copies);
            if validator_only {
                prop_assert_eq!(validator_copies, expected);
            }
        }
        // Same inputs, same map: every proxy agrees.
        prop_assert_eq!(place(&p, &cluster).expect("again"), placement);
    }

    #[test]
    fn adding_a_node_moves_only_what_it_must(
        existing in 2usize..8,
        shards in 1u32..32,
        copies_wanted in 1usize..3,
    ) {
        let before = nodes(existing, 0);
        let mut after = before.clone();
        after.push(NodeInfo { id: "new".to_owned(), node_type: NodeType::Validator });
        // Keep the copy count fixed so only the new node can cause movement.
        let mut p_before = policy(shards, copies_wanted as f64 / existing as f64);
        p_before.min_validator_copies = copies_wanted.min(existing);
        let mut p_after = p_before.clone();
        p_after.replication_factor = copies_wanted as f64 / (existing + 1) as f64;
        let old = place(&p_before, &before).expect("before");
        let new = place(&p_after, &after).expect("after");
        for (o, n) in old.shards.iter().zip(&new.shards) {
            let old_set: BTreeSet<&str> = o.replicas.iter().map(|r| r.node.as_str()).collect();
            let new_set: BTreeSet<&str> = n.replicas.iter().map(|r| r.node.as_str()).collect();
            if new_set.contains("new") {
                prop_assert_eq!(old_set.difference(&new_set).count(), 1);
            } else {
                prop_assert_eq!(&old_set, &new_set);
            }
        }
    }
}

#[test]
fn tables_sharded_alike_share_their_placement() {
    let cluster = nodes(3, 2);
    let mut users = policy(8, 0.5);
    users.min_validator_copies = 1;
    let mut orders = users.clone();
    orders.table = "orders".to_owned();
    orders.shard_keys = vec!["user_id".to_owned()];
    let a = place(&users, &cluster).expect("users");
    let b = place(&orders, &cluster).expect("orders");
    assert_eq!(a.shards, b.shards);
    let mut other = users.clone();
    other.table = "logs".to_owned();
    other.shards = 4;
    assert_ne!(placement_group(&users), placement_group(&other));
}

fn promotion(group: &str, shard: u32, node: &str, epoch: u64) -> Promotion {
    Promotion {
        group: group.to_owned(),
        shard,
        node: node.to_owned(),
        epoch,
    }
}

#[test]
fn a_promoted_copy_leads_its_shard_in_every_table_of_the_group() {
    let cluster = nodes(4, 0);
    let users = policy(4, 0.75);
    let mut orders = users.clone();
    orders.table = "orders".to_owned();
    let mut a = place(&users, &cluster).expect("users");
    let mut b = place(&orders, &cluster).expect("orders");
    let second = a.shards[2].replicas[1].node.clone();
    let first = a.shards[2].primary().to_owned();
    let promotions = [promotion(&a.group, 2, &second, 3)];
    a.promote(&promotions);
    b.promote(&promotions);
    assert_eq!(a.shards, b.shards);
    assert_eq!(a.shards[2].primary(), second);
    assert_eq!(a.shards[2].epoch, 3);
    assert_eq!(a.shards[2].replicas[0].role, ReplicaRole::Primary);
    assert!(
        a.shards[2].replicas[1..]
            .iter()
            .all(|r| r.role == ReplicaRole::Secondary)
    );
    assert!(a.shards[2].holds(&first), "the old primary keeps its copy");
    assert_eq!(a.shards[2].replicas.len(), 3);
    for other in [0, 1, 3] {
        assert_eq!(a.shards[other].epoch, FIRST_EPOCH);
    }
}

#[test]
fn a_promotion_of_a_node_without_a_copy_keeps_the_primary_but_not_the_epoch() {
    let cluster = nodes(3, 0);
    let mut placement = place(&policy(2, 0.34), &cluster).expect("placed");
    let before = placement.shards[0].replicas.clone();
    let stranger = cluster
        .iter()
        .find(|n| !placement.shards[0].holds(&n.id))
        .expect("a node without a copy");
    let group = placement.group.clone();
    placement.promote(&[promotion(&group, 0, &stranger.id, 5)]);
    assert_eq!(placement.shards[0].replicas, before);
    assert_eq!(placement.shards[0].epoch, 5);
    placement.promote(&[promotion("another group", 1, &before[0].node, 9)]);
    assert_eq!(placement.shards[1].epoch, FIRST_EPOCH);
}

#[test]
fn merged_promotions_keep_the_highest_epoch_per_shard() {
    let mut known = vec![promotion("g", 1, "a", 2)];
    assert!(!merge_promotions(&mut known, &[promotion("g", 1, "b", 2)]));
    assert!(merge_promotions(
        &mut known,
        &[promotion("g", 1, "c", 4), promotion("g", 0, "b", 3)]
    ));
    assert_eq!(
        known,
        vec![promotion("g", 0, "b", 3), promotion("g", 1, "c", 4)]
    );
    assert!(!merge_promotions(&mut known, &[promotion("g", 1, "a", 3)]));
}
