/** Renders `application/vnd.jupyter-flow.graph+json` (from `%flow graph`) in notebooks. */
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';

import { GRAPH_MIME_TYPE } from './types';
import { GraphRenderer } from './widgets';

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [GRAPH_MIME_TYPE],
  defaultRank: 50,
  createRenderer: options => new GraphRenderer(options.mimeType)
};

const extension: IRenderMime.IExtension = {
  id: 'jupyter-flow:graph-renderer',
  rendererFactory,
  rank: 50,
  dataType: 'json',
  fileTypes: [],
  documentWidgetFactoryOptions: []
};

export default extension;
