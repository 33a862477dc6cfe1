use fencekit_sim::simulation::*;
use fencekit_sim::nemesis::Nemesis;
fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let config = SimConfig::swarm(seed, false);
    let mut sim = Simulation::new(config.clone()).unwrap();
    let mut nemesis = Nemesis::new(config.faults.clone());
    let end = sim.now + config.safety.as_nanos() as u64;
    while sim.now < end { nemesis.strike(&mut sim); sim.step(); }
    nemesis.calm(&mut sim);
    for _ in 0..6 {
        sim.run_for(std::time::Duration::from_millis(500));
        for n in sim.ids() {
            match sim.replica(n) {
                Some(r) => { let raft = r.raft(); println!("t={} node {n}: term {} state {:?} commit {} last {} leader {} lease {:?}", sim.now/1000000, raft.term, raft.state, raft.raft_log.committed, raft.raft_log.last_index(), raft.leader_id, r.leadership(sim.local(n)).map(|l| l.token)); }
                None => println!("node {n}: down"),
            }
        }
        println!("max commit {}", sim.stats.committed);
        for n in sim.ids() { if let Some(r) = sim.replica(n) { if r.raft().state == raft::StateRole::Leader { for (id, pr) in r.raft().prs().iter() { println!("  pr {id}: {:?} matched {} next {} pending_snap {} recent_active {} paused {}", pr.state, pr.matched, pr.next_idx, pr.pending_snapshot, pr.recent_active, pr.is_paused()); } println!("  first index {}", r.raft().raft_log.first_index()); } } }
    }
}
