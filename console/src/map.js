// map.js — what the Picture page draws with, loaded with it (app.js imports it on demand).
export { default as L } from "leaflet";
export { default as ms } from "milsymbol";
export { feature } from "topojson-client";
export { default as land } from "world-atlas/land-110m.json";
