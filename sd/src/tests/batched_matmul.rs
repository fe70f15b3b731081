//! The candle pattern behind the batched real-image bug, pinned: `Linear` (a batched product
//! with a shared right-hand side) applied to a transposed view. candle-core 0.11.1's CPU matmul
//! folds the batches into one product without checking that the left-hand side's rows are
//! contiguous, so every batch element after the first reads the wrong memory
//! (huggingface/candle#3758). If a candle upgrade changes this, the first test fails and says
//! which guards may go; the second checks that our VAE mid block, which guards, does not depend
//! on an image's batch neighbours.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::tests::{max_relative_error, wave};
use crate::vae_mid::VaeMidBlock;

/// `x` as B × T × C, a transposed view of a contiguous B × C × T tensor.
fn transposed_tokens(batch: usize, channels: usize, tokens: usize) -> Tensor {
    let x = wave(&[batch, channels, tokens], 0.4);
    x.transpose(1, 2).unwrap()
}

#[test]
fn candle_linear_on_a_transposed_batch_reads_the_wrong_rows() {
    let (batch, channels, tokens) = (3, 5, 7);
    let linear = candle_nn::Linear::new(wave(&[4, channels], 1.3), Some(wave(&[4], 2.0)));
    let view = transposed_tokens(batch, channels, tokens);
    assert!(!view.is_contiguous());
    let stock = linear.forward(&view).unwrap();
    let guarded = linear.forward(&view.contiguous().unwrap()).unwrap();
    for b in 0..batch {
        let alone = linear.forward(&view.get(b).unwrap().contiguous().unwrap()).unwrap();
        let guarded_row = guarded.get(b).unwrap();
        assert_eq!(max_relative_error(&guarded_row, &alone), 0.0, "contiguous input, row {b}");
        let stock_error = max_relative_error(&stock.get(b).unwrap(), &alone);
        if b == 0 {
            // Right, up to the rounding of a differently strided product.
            assert!(
                stock_error <= 1e-6,
                "row 0 is right even in the stock path: {stock_error:.1e}"
            );
        } else {
            assert!(
                stock_error > 1e-3,
                "candle-core now computes Linear on a transposed batch correctly (row {b}, \
                 error {stock_error:.1e}): the `.contiguous()` guards in sd/src/vae_mid.rs may \
                 go, and this test with them"
            );
        }
    }
}

#[test]
fn vae_mid_block_output_does_not_depend_on_batch_neighbours() {
    let (channels, groups) = (32, 8);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let block = VaeMidBlock::new(vb, channels, groups).unwrap();
    // Perturb every tensor so that norms and biases are not the trivial ones.
    for (i, var) in varmap.all_vars().iter().enumerate() {
        let shape = var.dims().to_vec();
        var.set(&(wave(&shape, i as f64) * 0.2).unwrap()).unwrap();
    }
    let images = wave(&[3, channels, 4, 6], 0.9);
    let together = block.forward(&images).unwrap();
    for b in 0..3 {
        let alone = block.forward(&images.narrow(0, b, 1).unwrap()).unwrap();
        let error = max_relative_error(&together.narrow(0, b, 1).unwrap(), &alone);
        assert!(error <= 1e-6, "image {b}: relative error {error:.1e} against a batch of one");
    }
}
