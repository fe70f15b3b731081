//! Timing driver of `scripts/bench-semantic`: the semantic lens's scores
//! (`alignment::semantic`: the distance matrix, LOO 1-NN and 5-NN, mAP@R, AUC, ratio,
//! silhouette; point estimates, no bootstrap or permutations) on data written by
//! `scripts/bench_semantic_ref.py`, so the launcher can set the time and the numbers beside
//! scipy's `cdist` and the reference scores on the same matrices.
//!
//! Usage: `bench_semantic F.f64 C.u32 I.u32 N D [MIB]` — `F` the `N × D` features (row-major,
//! little-endian f64), `C` and `I` each object's class and image; `MIB` the distance budget
//! (`Distances::new`; default: the whole matrix), so a budget under N² · 8 bytes times the
//! blocked path. Prints one line per distance: `name seconds knn1 knn5 map_at_r auc ratio
//! silhouette`.

use std::time::Instant;

use alignment::semantic::{scores, Distances, Items, SemanticConfig};
use alignment::{Distance, Matrix};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(6..=7).contains(&args.len()) {
        eprintln!("usage: bench_semantic F.f64 C.u32 I.u32 N D [MIB]");
        std::process::exit(2);
    }
    let budget = args.get(6).map_or(usize::MAX, |m| m.parse::<usize>().expect("MIB") << 20);
    let (n, d): (usize, usize) = (args[4].parse().expect("N"), args[5].parse().expect("D"));
    let f: Vec<f64> = std::fs::read(&args[1])
        .expect("F")
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let ints = |path: &str| -> Vec<usize> {
        std::fs::read(path)
            .expect("labels")
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .collect()
    };
    let (classes, images) = (ints(&args[2]), ints(&args[3]));
    let m = Matrix::new("features", &f, n, d).expect("N × D");
    let items = Items::new(&classes, &images).expect("labels");
    let config = SemanticConfig { bootstrap: 0, permutations: 0, seed: 0 };
    let distances = [
        ("cosine", Distance::Cosine),
        ("euclidean", Distance::Euclidean),
        ("l1", Distance::L1),
        ("linf", Distance::LInf),
        ("correlation", Distance::Correlation),
    ];
    for (name, distance) in distances {
        let start = Instant::now();
        let dm = Distances::new(&m, distance, budget);
        let s = scores(&dm, &items, &config).expect("scores");
        let seconds = start.elapsed().as_secs_f64();
        let v = [s.knn1, s.knn5, s.map_at_r, s.auc, s.ratio, s.silhouette].map(|x| x.value);
        println!("{name} {seconds} {} {} {} {} {} {}", v[0], v[1], v[2], v[3], v[4], v[5]);
    }
}
