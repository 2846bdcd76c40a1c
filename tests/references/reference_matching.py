# Copyright (c) mmdetr contributors. All rights reserved.
"""Independent per-image reference of DETR's matching and targets, written
the straightforward way (one image, scipy on its cost matrix, dense targets
with weights as mmdet builds them): what the batched implementation in
``mmdetr.models`` must reproduce."""
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment


def reference_assign(match_costs, pred, gt, img_meta):
    """One image: (gt_inds, labels) with gt_inds 1-based (0: background) and
    labels -1 for background.

    Args:
        match_costs (list): Cost objects called as mmdet's,
            ``cost(pred_instances, gt_instances, img_meta)``.
        pred (InstanceData): ``scores`` (num_preds, C), ``bboxes`` absolute
            (num_preds, 4).
        gt (InstanceData): ``labels`` (num_gts, ), ``bboxes`` (num_gts, 4).
    """
    num_preds = len(pred)
    gt_inds = torch.zeros(num_preds, dtype=torch.long)
    labels = torch.full((num_preds, ), -1, dtype=torch.long)
    if len(gt) == 0 or num_preds == 0:
        return gt_inds, labels
    cost = sum(c(pred, gt, img_meta) for c in match_costs)
    rows, cols = linear_sum_assignment(cost.detach().float().numpy())
    rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
    gt_inds[rows] = cols + 1
    labels[rows] = gt.labels[cols]
    return gt_inds, labels


def reference_targets(head, cls_score, bbox_pred, gt_bboxes, gt_labels,
                      img_meta):
    """One image's dense targets, as mmdet's ``_get_targets_single``.

    Returns:
        tuple: labels, label_weights, bbox_targets, bbox_weights (normalised
        cxcywh), num_pos.
    """
    img_h, img_w = img_meta['img_shape'][:2]
    factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h])[None]
    pred = InstanceData(scores=cls_score,
                        bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
    gt = InstanceData(bboxes=gt_bboxes, labels=gt_labels)
    gt_inds, _ = reference_assign(head.assigner.match_costs, pred, gt,
                                  img_meta)
    pos = gt_inds > 0
    num_query = bbox_pred.size(0)
    labels = torch.full((num_query, ), head.num_classes, dtype=torch.long)
    labels[pos] = gt_labels[gt_inds[pos] - 1]
    bbox_targets = torch.zeros_like(bbox_pred)
    bbox_weights = torch.zeros_like(bbox_pred)
    bbox_weights[pos] = 1.0
    bbox_targets[pos] = bbox_xyxy_to_cxcywh(gt_bboxes[gt_inds[pos] - 1] /
                                            factor)
    return (labels, torch.ones(num_query), bbox_targets, bbox_weights,
            int(pos.sum()))


def reference_layer_loss(head, cls_scores, bbox_preds, gt_bboxes_list,
                         gt_labels_list, img_metas):
    """One decoder layer's (loss_cls, loss_bbox, loss_iou), as mmdet 3.3's
    ``DETRHead.loss_by_feat_single`` computes them (single process)."""
    targets = [
        reference_targets(head, c, b, gb, gl, m) for c, b, gb, gl, m in zip(
            cls_scores, bbox_preds, gt_bboxes_list, gt_labels_list,
            img_metas)
    ]
    labels, label_weights, bbox_targets, bbox_weights = (
        torch.cat([t[k] for t in targets]) for k in range(4))
    num_pos = sum(t[4] for t in targets)
    num_neg = labels.numel() - num_pos
    cls_avg_factor = max(num_pos * 1.0 + num_neg * head.bg_cls_weight, 1)
    loss_cls = head.loss_cls(
        cls_scores.reshape(-1, cls_scores.shape[-1]), labels, label_weights,
        avg_factor=cls_avg_factor)
    num_pos = float(max(num_pos, 1))
    factors = torch.cat([
        bbox_preds.new_tensor([m['img_shape'][1], m['img_shape'][0]] *
                              2)[None].expand(bbox_preds.size(1), 4)
        for m in img_metas
    ])
    preds = bbox_preds.reshape(-1, 4)
    loss_iou = head.loss_iou(
        bbox_cxcywh_to_xyxy(preds) * factors,
        bbox_cxcywh_to_xyxy(bbox_targets) * factors,
        bbox_weights,
        avg_factor=num_pos)
    loss_bbox = head.loss_bbox(
        preds, bbox_targets, bbox_weights, avg_factor=num_pos)
    return loss_cls, loss_bbox, loss_iou
