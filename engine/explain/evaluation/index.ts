// Evaluation of explanation maps (Chefer et al. CVPR 2021): perturbation curves and segmentation against masks.
export * from './perturbation.js';
export * from './segmentation.js';
export * from './methods.js';
export * from './upsample.js';
