"""The VIPSeg configs carry the official Video-kMaX recipe (docs/recipes.md).

Each row is the value of the official configs/VIPSeg/*.yaml (dlsrbgg33/video_kmax) for that
backbone and case; Axial-ResNet-50 has no official config and takes the R50 values. A later
edit of a config that drifts from the table fails here.
"""

import pytest

from deeplab_video import config
from tests import conftest

# config name -> (steps, backbone drop-path keep, OBJECT_MASK_THRESHOLD, LAMB_CONF_THRES,
# clip length, train crop).
_OFFICIAL = {
    "resnet50": (80000, 1.0, 0.3, 0.7, 2, (897, 1601)),
    "resnet50_online": (60000, 1.0, 0.4, 0.5, 1, (897, 1601)),
    # The near-online ConvNeXt-L yaml's IMAGE_SIZE [833, 1409] is overridden by its second
    # INPUT block when loaded, so the base 897 x 1601 is what ran (see the config).
    "convnext_l": (30000, 0.6, 0.3, 0.7, 2, (897, 1601)),
    "convnext_l_online": (40000, 0.6, 0.4, 0.5, 1, (897, 1601)),
    "axial_r50": (80000, 0.8, 0.3, 0.7, 2, (897, 1601)),
    "axial_r50_online": (60000, 0.8, 0.4, 0.5, 1, (897, 1601)),
}


@pytest.fixture(params=sorted(_OFFICIAL), name="case")
def _case(request):
    options = config.load_config(conftest.CONFIG_DIR / f"vipseg/{request.param}.textproto")
    return options, _OFFICIAL[request.param]


def test_vipseg_configs_are_all_in_the_table():
    names = {path.stem for path in (conftest.CONFIG_DIR / "vipseg").glob("*.textproto")}
    assert names == set(_OFFICIAL)


def test_schedule_and_optimiser(case):
    options, (steps, *_) = case
    solver = options.trainer_options.solver_options
    assert solver.training_number_of_steps == steps
    assert solver.optimizer == "adamw"
    assert solver.base_learning_rate == pytest.approx(3e-4)
    assert solver.backbone_learning_rate_multiplier == pytest.approx(0.1)
    assert solver.weight_decay == pytest.approx(0.05)
    assert solver.warmup_steps == 5000
    assert options.train_dataset_options.batch_size == 8


def test_model_and_regularisation(case):
    options, (_, backbone_keep, *_) = case
    model = options.model_options
    assert model.num_classes == 124
    assert model.backbone.drop_path_keep_prob == pytest.approx(backbone_keep)
    assert model.transformer_decoder.drop_path_keep_prob == pytest.approx(0.8)
    assert model.transformer_decoder.num_queries == 128
    # AUX_SEMANTIC_WEIGHT 0.0: no branch and no loss.
    assert not model.heads.auxiliary_semantic_head
    assert options.trainer_options.loss_options.auxiliary_semantic_weight == 0.0


def test_loss_weights(case):
    loss = case[0].trainer_options.loss_options
    # DICE_WEIGHT 3.0 and CLASS_WEIGHT 1.0 as the PQ-style weight and its class share.
    assert loss.pq_style_weight == pytest.approx(3.0)
    assert loss.pq_style_weight * loss.pq_style_class_term_weight == pytest.approx(1.0)
    assert loss.mask_id_cross_entropy_weight == pytest.approx(0.3)
    assert loss.instance_discrimination_weight == pytest.approx(1.0)
    assert loss.instance_discrimination_temperature == pytest.approx(1.5)
    assert loss.instance_discrimination_sample_k == 4096
    assert loss.dice_smooth == pytest.approx(1.0)
    assert loss.pq_style_weight_floor == pytest.approx(1e-5)
    assert loss.share_final_matching and loss.deep_supervision


def test_data(case):
    options, (*_, clip_length, crop) = case
    train = options.train_dataset_options
    assert train.clip_length == clip_length
    assert options.eval_dataset_options.clip_length == clip_length
    assert tuple(train.crop_size) == crop
    assert train.augmentations.min_scale_factor == pytest.approx(0.5)
    assert train.augmentations.max_scale_factor == pytest.approx(2.0)
    augment = train.augmentations
    if clip_length > 1:
        assert augment.frame_sampling_range == 5  # SAMPLING_FRAME_RANGE
    assert augment.copy_paste_probability == 1.0
    assert augment.copy_paste_scale_ratio == pytest.approx(0.5)
    assert augment.color_jitter.brightness_delta == pytest.approx(32)  # ColorAugSSDTransform
    # MIN_SIZE_TEST 897, MAX_SIZE_TEST 1601.
    evaluation = options.eval_dataset_options
    assert (evaluation.min_resize_value, evaluation.max_resize_value) == (897, 1601)
    assert tuple(evaluation.crop_size) == (897, 1601)


def test_post_processing_and_tracking(case):
    options, (_, _, mask_threshold, lamb_threshold, *_) = case
    evaluator = options.evaluator_options
    post = evaluator.post_processing
    assert post.mode == "pixelwise_official"
    assert post.class_threshold_thing == pytest.approx(0.5)
    assert post.class_threshold_stuff == pytest.approx(0.5)
    assert post.mask_threshold == pytest.approx(mask_threshold)
    assert post.overlap_threshold == pytest.approx(0.8)
    assert post.thing_area_limit == 0 and post.stuff_area_limit == 0
    memory = evaluator.memory_buffer
    assert memory.kind == "location_aware"
    assert memory.similarity_threshold == pytest.approx(lamb_threshold)
    assert memory.refresh_frames == 10
    assert memory.temperature == pytest.approx(1.0)
    assert memory.momentum == pytest.approx(0.8)
    assert memory.class_check
    assert memory.new_object_insertion == "when_no_candidates"
    assert memory.embedding_output == "mask_embeddings"
    if options.eval_dataset_options.clip_length > 1:
        # Online clips share no frame, so stitching has nothing to join there.
        assert evaluator.stitching.enabled
        assert evaluator.stitching.output_frames == "aligned_clips"
