// Public surface of Heed's rendering: colormaps, maps, overlays, grids, charts, PNG conversion.
export * from './colormap.js';
export * from './map.js';
export * from './image.js';
export * from './overlay.js';
export * from './grid.js';
export * from './chart.js';
export { escapeXml, fitText } from './svg.js';
export * from './compare.js';
