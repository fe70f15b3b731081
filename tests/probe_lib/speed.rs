//! A timing printout of one probe fold at the paper's scale (no assertion on time: machines
//! differ). Run in release to read a meaningful number.

use std::time::Instant;

use probe::{complement, probe_fold, ProbeConfig};

use crate::data::{normals, rng};

#[test]
fn time_one_fold_at_paper_scale() {
    // N = 1000 (900 train), J = 7, B = 1000; D = 384 (primal) and D = 2048 (kernel).
    let (n, j) = (1000, 7);
    let mut g = rng(99);
    let y = normals(&mut g, n * j);
    let test: Vec<usize> = (0..n).filter(|i| i % 10 == 0).collect();
    let train = complement(n, &test);
    for d in [384, 2048] {
        let x: Vec<f32> = normals(&mut g, n * d).into_iter().map(|v| v as f32).collect();
        let start = Instant::now();
        let res = probe_fold(&x, n, d, &y, j, &train, &test, 0, &ProbeConfig::default()).unwrap();
        let took = start.elapsed();
        assert_eq!(res.len(), j);
        assert!(res.iter().all(|r| r.null_rmse.len() == 1000 && r.n_components == 120));
        eprintln!("probe_fold N=1000 (900 train) D={d} J=7 B=1000 P=120: {took:.2?}");
    }
}
