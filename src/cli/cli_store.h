/* cli_store.h — `kizuna store`. */
#ifndef CLI_STORE_H
#define CLI_STORE_H
int cli_store_main(int argc, char **argv);
#endif
