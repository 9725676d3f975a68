//! Which other party each receive slot of a party shows.
//!
//! Pure bookkeeping, kept apart from the driver so the rule can be read and tested alone:
//! a slot keeps the party it shows for as long as that party is in the conference; a free
//! slot takes the first party, in join order, that the receiver does not show yet. So the
//! earliest others fill the first slots (the sendrecv lines of the simplest client), and a
//! slot freed by a leaver goes to whoever was waiting for one.

use confer_core::media::PartyKey;

/// Refills `slots` (one entry per receive slot, `None` when free) of the receiver `me`
/// from `order` (the conference's parties with media, in join order). Returns the slots
/// whose party changed to a new one, with that party.
pub fn refill(
    slots: &mut [Option<PartyKey>],
    me: PartyKey,
    order: &[PartyKey],
) -> Vec<(usize, PartyKey)> {
    for slot in slots.iter_mut() {
        if let Some(shown) = slot {
            if !order.contains(shown) {
                *slot = None;
            }
        }
    }
    let mut changed = Vec::new();
    let shown: Vec<PartyKey> = slots.iter().flatten().copied().collect();
    let mut waiting = order
        .iter()
        .filter(|key| **key != me && !shown.contains(key));
    for (index, slot) in slots.iter_mut().enumerate() {
        if slot.is_none() {
            let Some(next) = waiting.next() else { break };
            *slot = Some(*next);
            changed.push((index, *next));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_core::GroupId;

    fn key(party: u64) -> PartyKey {
        PartyKey {
            conference: GroupId(1),
            party,
        }
    }

    #[test]
    fn the_first_others_fill_the_first_slots_in_join_order() {
        let mut slots = vec![None; 2];
        let changed = refill(&mut slots, key(2), &[key(1), key(2), key(3), key(4)]);
        assert_eq!(slots, vec![Some(key(1)), Some(key(3))]);
        assert_eq!(changed, vec![(0, key(1)), (1, key(3))]);
    }

    #[test]
    fn a_slot_keeps_its_party_and_a_freed_one_goes_to_the_next_waiting() {
        let mut slots = vec![None; 2];
        refill(&mut slots, key(1), &[key(1), key(2), key(3), key(4)]);
        assert_eq!(slots, vec![Some(key(2)), Some(key(3))]);
        let changed = refill(&mut slots, key(1), &[key(1), key(3), key(4)]);
        assert_eq!(slots, vec![Some(key(4)), Some(key(3))]);
        assert_eq!(changed, vec![(0, key(4))]);
        let changed = refill(&mut slots, key(1), &[key(1), key(3), key(4)]);
        assert!(changed.is_empty());
    }

    #[test]
    fn a_slot_with_nobody_to_show_stays_free() {
        let mut slots = vec![Some(key(2)), None];
        let changed = refill(&mut slots, key(1), &[key(1)]);
        assert_eq!(slots, vec![None, None]);
        assert!(changed.is_empty());
    }
}
