"""``nnunet-rc trainer-path``: the folder for nnU-Net's ``nnUNet_extTrainer`` variable."""
COMMAND = "trainer-path"
HELP = "print the folder to put in nnUNet_extTrainer: export nnUNet_extTrainer=$(nnunet-rc trainer-path)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from nnunet_rc import trainer_path

    print(trainer_path())
    return 0
