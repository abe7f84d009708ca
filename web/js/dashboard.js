// dashboard.js - placeholder, replaced below.
import { h, replace } from './dom.js';
export async function render(main, ctx) {
  ctx.title('Dashboard');
  replace(main, h('h1', null, 'Dashboard'));
}
