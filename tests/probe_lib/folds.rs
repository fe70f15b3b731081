//! K-fold assignment: a seeded partition with balanced sizes, like scikit-learn's KFold.

use probe::{complement, kfold};

#[test]
fn folds_partition_and_are_balanced() {
    for (n, k) in [(10, 3), (100, 10), (7, 7), (1003, 10), (2, 2)] {
        let folds = kfold(n, k, 42).unwrap();
        assert_eq!(folds.len(), k);
        let mut seen = vec![0u8; n];
        for fold in &folds {
            assert!(fold.windows(2).all(|w| w[0] < w[1]), "fold not sorted ascending");
            for &i in fold {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "n={n} k={k}: not a partition");
        // sklearn's sizes: the first n % k folds hold one extra stimulus.
        for (f, fold) in folds.iter().enumerate() {
            assert_eq!(fold.len(), n / k + usize::from(f < n % k), "n={n} k={k} fold {f}");
        }
        for fold in &folds {
            assert_eq!(complement(n, fold).len() + fold.len(), n);
        }
    }
}

#[test]
fn folds_are_a_function_of_the_seed() {
    let a = kfold(100, 10, 1).unwrap();
    assert_eq!(a, kfold(100, 10, 1).unwrap());
    assert_ne!(a, kfold(100, 10, 2).unwrap());
    // The shuffle really shuffles: the first fold is not the first ten stimuli.
    assert_ne!(a[0], (0..10).collect::<Vec<_>>());
}
