import { LabIcon } from '@jupyterlab/ui-components';

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="1.5" y="3" width="7" height="5" rx="1.2"/>
    <rect x="1.5" y="16" width="7" height="5" rx="1.2"/>
    <rect x="15.5" y="9.5" width="7" height="5" rx="1.2"/>
    <path d="M8.5 5.5h2.5a2 2 0 0 1 2 2V10.2h2.5v1.6H13v-4.3a.4.4 0 0 0-.4-.4H8.5z"/>
    <path d="M8.5 18.5h2.5a2 2 0 0 0 2-2V12.2h2.5v1.6H14.6v2.7a3.6 3.6 0 0 1-3.6 3.6H8.5z"/>
  </g>
</svg>`;

export const flowIcon = new LabIcon({ name: 'jupyter-flow:flow', svgstr });
