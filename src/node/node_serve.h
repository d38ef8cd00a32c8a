/* node_serve.h — `kizuna serve`: start a node. */
#ifndef NODE_SERVE_H
#define NODE_SERVE_H
int node_serve_main(int argc, char **argv);
#endif
